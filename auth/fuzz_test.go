package auth_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"cpis/auth"
)

// FuzzVerify feeds arbitrary strings to the token verifier: it must never
// panic, and every refusal must be a TokenError.
func FuzzVerify(f *testing.F) {
	testKeys(&testing.T{})
	now := time.Now()
	rs := signer{"rsa", jwt.SigningMethodRS256, keys.rsa}
	valid := rs.sign(&testing.T{}, userClaims(now, nil))
	for _, s := range []string{valid, valid[:len(valid)-3], "", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYSJ9.e30.AAAA", "...."} {
		f.Add(s)
	}
	v, err := auth.NewVerifier(auth.Config{Keys: auth.StaticKeys{"rsa": &keys.rsa.PublicKey}, Issuer: iss, Audience: aud, RBAC: auth.DefaultRBAC()})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := v.Verify(context.Background(), raw)
		if err != nil {
			var te *auth.TokenError
			if !errors.As(err, &te) || p != nil {
				t.Fatalf("refusal is not a TokenError: %v", err)
			}
			return
		}
		if p == nil || p.Subject == "" {
			t.Fatalf("accepted a token without a principal")
		}
	})
}
