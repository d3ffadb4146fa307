package auth_test

import (
	"context"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"cpis/auth"
)

// BenchmarkVerify measures token checks: a token seen before is found in
// the cache by its hash; a new one is verified (RS256) and cached.
func BenchmarkVerify(b *testing.B) {
	testKeys(&testing.T{})
	now := time.Now()
	rs := signer{"rsa", jwt.SigningMethodRS256, keys.rsa}
	tok := rs.sign(&testing.T{}, userClaims(now, nil))
	newVerifier := func() *auth.Verifier {
		v, err := auth.NewVerifier(auth.Config{Keys: auth.StaticKeys{"rsa": &keys.rsa.PublicKey}, Issuer: iss, Audience: aud, RBAC: auth.DefaultRBAC()})
		if err != nil {
			b.Fatal(err)
		}
		return v
	}
	b.Run("cached", func(b *testing.B) {
		v := newVerifier()
		if _, err := v.Verify(context.Background(), tok); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := v.Verify(context.Background(), tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("uncached-rs256", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			v := newVerifier()
			if _, err := v.Verify(context.Background(), tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}
