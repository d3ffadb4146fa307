package auth_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/auth"
)

const (
	iss = "https://idp.example"
	aud = "cpis"
)

// signer is a test key with its kid and algorithm.
type signer struct {
	kid string
	alg jwt.SigningMethod
	key crypto.Signer
}

var keys struct {
	once          sync.Once
	rsa, rsa2, ps *rsa.PrivateKey
	ec            *ecdsa.PrivateKey
}

func testKeys(t *testing.T) {
	keys.once.Do(func() {
		var err error
		for _, k := range []**rsa.PrivateKey{&keys.rsa, &keys.rsa2, &keys.ps} {
			if *k, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
				panic(err)
			}
		}
		if keys.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
	})
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func rsaJWK(kid string, k *rsa.PublicKey) map[string]string {
	return map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
}

func ecJWK(kid string, k *ecdsa.PublicKey) map[string]string {
	b, err := k.Bytes() // 0x04 || X || Y
	if err != nil {
		panic(err)
	}
	return map[string]string{"kty": "EC", "kid": kid, "crv": "P-256", "x": b64(b[1:33]), "y": b64(b[33:])}
}

func jwks(entries ...map[string]string) []byte {
	b, _ := json.Marshal(map[string]any{"keys": entries})
	return b
}

func (s signer) sign(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(s.alg, claims)
	tok.Header["kid"] = s.kid
	out, err := tok.SignedString(s.key)
	require.NoError(t, err)
	return out
}

func userClaims(now time.Time, mod func(jwt.MapClaims)) jwt.MapClaims {
	c := jwt.MapClaims{
		"iss": iss, "aud": aud, "sub": "555021935107", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"name": "Dr Jane Smith", "nhsid_useruid": "555021935107", "selected_roleid": "555021936109",
		"nhsid_nrbac_roles": []any{
			map[string]any{"person_roleid": "111", "org_code": "X26", "role_name": "Other", "activity_codes": []string{"B0170"}},
			map[string]any{"person_roleid": "555021936109", "org_code": "RBA", "role_name": "Nurse Access Role",
				"role_code": "S8000:G8000:R8001", "activity_codes": []string{"B0107"}},
		},
		"nhsid_user_orgs": []any{map[string]any{"org_code": "RBA", "org_name": "Somerset NHS Foundation Trust"}},
	}
	if mod != nil {
		mod(c)
	}
	return c
}

func systemClaims(now time.Time) jwt.MapClaims {
	return jwt.MapClaims{"iss": iss, "aud": aud, "sub": "la-client", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"org_code": "LA001", "org_name": "Local Authority 001", "scope": "system/EpisodeOfCare.write system/Flag.read"}
}

func verifier(t *testing.T, ks auth.KeySource, now time.Time) *auth.Verifier {
	v, err := auth.NewVerifier(auth.Config{Keys: ks, Issuer: iss, Audience: aud, RBAC: auth.DefaultRBAC(), Now: func() time.Time { return now }})
	require.NoError(t, err)
	return v
}

func TestTokens(t *testing.T) {
	testKeys(t)
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	path := filepath.Join(dir, "jwks.json")
	require.NoError(t, os.WriteFile(path, jwks(rsaJWK("rsa", &keys.rsa.PublicKey), rsaJWK("ps", &keys.ps.PublicKey), ecJWK("ec", &keys.ec.PublicKey)), 0o600))
	ks, err := auth.FileKeys(path, auth.KeyOptions{})
	require.NoError(t, err)

	rs256 := signer{"rsa", jwt.SigningMethodRS256, keys.rsa}
	rs512 := signer{"rsa", jwt.SigningMethodRS512, keys.rsa}
	ps256 := signer{"ps", jwt.SigningMethodPS256, keys.ps}
	es256 := signer{"ec", jwt.SigningMethodES256, keys.ec}
	foreign := signer{"rsa", jwt.SigningMethodRS256, keys.rsa2} // a known kid, someone else's key
	unknownKid := signer{"nope", jwt.SigningMethodRS256, keys.rsa}

	hmacConfusion := func() string {
		// An attacker signs HS256 with the public key's bytes as the secret.
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, userClaims(now, nil))
		tok.Header["kid"] = "rsa"
		s, err := tok.SignedString([]byte(rsaJWK("rsa", &keys.rsa.PublicKey)["n"]))
		require.NoError(t, err)
		return s
	}
	none := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodNone, userClaims(now, nil))
		tok.Header["kid"] = "rsa"
		s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
		require.NoError(t, err)
		return s
	}
	mod := func(f func(jwt.MapClaims)) jwt.MapClaims { return userClaims(now, f) }

	cases := []struct {
		name   string
		token  string
		reason string // substring of the refusal; "" means accepted
	}{
		{"rs256-user-ok", rs256.sign(t, userClaims(now, nil)), ""},
		{"rs512-ok", rs512.sign(t, userClaims(now, nil)), ""},
		{"ps256-ok", ps256.sign(t, userClaims(now, nil)), ""},
		{"es256-ok", es256.sign(t, userClaims(now, nil)), ""},
		{"system-ok", rs256.sign(t, systemClaims(now)), ""},
		{"expired-within-leeway-ok", rs256.sign(t, mod(func(c jwt.MapClaims) { c["exp"] = now.Add(-30 * time.Second).Unix() })), ""},
		{"expired", rs256.sign(t, mod(func(c jwt.MapClaims) { c["exp"] = now.Add(-2 * time.Minute).Unix() })), "expired"},
		{"no-exp", rs256.sign(t, mod(func(c jwt.MapClaims) { delete(c, "exp") })), "no expiry"},
		{"not-yet-valid", rs256.sign(t, mod(func(c jwt.MapClaims) { c["nbf"] = now.Add(5 * time.Minute).Unix() })), "not valid yet"},
		{"issued-in-future", rs256.sign(t, mod(func(c jwt.MapClaims) { c["iat"] = now.Add(5 * time.Minute).Unix() })), "not valid yet"},
		{"wrong-issuer", rs256.sign(t, mod(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" })), "wrong issuer"},
		{"wrong-audience", rs256.sign(t, mod(func(c jwt.MapClaims) { c["aud"] = "someone-else" })), "wrong audience"},
		{"unknown-kid", unknownKid.sign(t, userClaims(now, nil)), "unknown key"},
		{"foreign-key", foreign.sign(t, userClaims(now, nil)), "signature is invalid"},
		{"alg-none", none(), "algorithm not accepted"},
		{"hmac-confusion", hmacConfusion(), "algorithm not accepted"},
		{"alg-key-mismatch", signer{"ec", jwt.SigningMethodRS256, keys.rsa}.sign(t, userClaims(now, nil)), "does not match"},
		{"malformed", "abc.def", "malformed"},
		{"garbage", "%%%", "malformed"},
		{"no-kid", func() string {
			tok := jwt.NewWithClaims(jwt.SigningMethodRS256, userClaims(now, nil))
			s, _ := tok.SignedString(keys.rsa)
			return s
		}(), "no kid"},
		{"missing-selected-role", rs256.sign(t, mod(func(c jwt.MapClaims) { delete(c, "selected_roleid") })), "selected_roleid"},
		{"selected-role-not-held", rs256.sign(t, mod(func(c jwt.MapClaims) { c["selected_roleid"] = "999" })), "matches none"},
		{"no-subject", rs256.sign(t, mod(func(c jwt.MapClaims) { delete(c, "sub") })), "no subject"},
		{"system-without-org", rs256.sign(t, func() jwt.MapClaims { c := systemClaims(now); delete(c, "org_code"); return c }()), "neither"},
		{"system-bad-org", rs256.sign(t, func() jwt.MapClaims { c := systemClaims(now); c["org_code"] = "la 1"; return c }()), "org_code"},
		{"wrong-claim-type", rs256.sign(t, mod(func(c jwt.MapClaims) { c["nhsid_nrbac_roles"] = "admin" })), "malformed"},
		{"too-long", strings.Repeat("a", auth.MaxTokenLength+1), "too long"},
		{"crit-header", func() string {
			tok := jwt.NewWithClaims(jwt.SigningMethodRS256, userClaims(now, func(c jwt.MapClaims) { c["exp_policy"] = "x" }))
			tok.Header["kid"] = "rsa"
			tok.Header["crit"] = []string{"exp_policy"}
			s, err := tok.SignedString(keys.rsa)
			require.NoError(t, err)
			return s
		}(), "crit"},
		{"exp-as-string", rs256.sign(t, mod(func(c jwt.MapClaims) { c["exp"] = strconv.FormatInt(now.Add(time.Hour).Unix(), 10) })), "JSON numbers"},
		{"nbf-as-string", rs256.sign(t, mod(func(c jwt.MapClaims) { c["nbf"] = strconv.FormatInt(now.Unix(), 10) })), "JSON numbers"},
		{"iat-as-string", rs256.sign(t, mod(func(c jwt.MapClaims) { c["iat"] = strconv.FormatInt(now.Unix(), 10) })), "JSON numbers"},
		{"lifetime-24h-ok", rs256.sign(t, mod(func(c jwt.MapClaims) { c["exp"] = now.Add(24 * time.Hour).Unix() })), ""},
		{"lifetime-too-long", rs256.sign(t, mod(func(c jwt.MapClaims) {
			c["iat"] = now.Add(-time.Hour).Unix()
			c["exp"] = now.Add(24 * time.Hour).Unix()
		})), "lifetime"},
		{"lifetime-a-year", rs256.sign(t, mod(func(c jwt.MapClaims) { c["exp"] = now.AddDate(1, 0, 0).Unix() })), "lifetime"},
		{"no-iat-exp-near-ok", rs256.sign(t, mod(func(c jwt.MapClaims) { delete(c, "iat") })), ""},
		{"no-iat-exp-far-ahead", rs256.sign(t, mod(func(c jwt.MapClaims) {
			delete(c, "iat")
			c["exp"] = now.Add(48 * time.Hour).Unix()
		})), "further ahead"},
		{"selected-role-org-not-a-user-org", rs256.sign(t, mod(func(c jwt.MapClaims) {
			c["nhsid_user_orgs"] = []any{map[string]any{"org_code": "X26", "org_name": "Another Trust"}}
		})), "nhsid_user_orgs"},
		{"selected-role-org-no-user-orgs", rs256.sign(t, mod(func(c jwt.MapClaims) { delete(c, "nhsid_user_orgs") })), "nhsid_user_orgs"},
		{"empty", "", "no access token"},
	}
	v := verifier(t, ks, now)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := v.Verify(context.Background(), tc.token)
			if tc.reason == "" {
				require.NoError(t, err)
				require.NotNil(t, p)
				return
			}
			require.Error(t, err)
			assert.Nil(t, p)
			assert.True(t, errors.Is(err, auth.ErrUnauthorised), "a refusal is unauthorised")
			var te *auth.TokenError
			require.ErrorAs(t, err, &te)
			assert.Contains(t, te.Reason, tc.reason)
			assert.NotContains(t, te.Reason, "555021935107", "no claim values in the reason")
		})
	}
}

func TestPrincipal(t *testing.T) {
	testKeys(t)
	now := time.Now()
	rs := signer{"rsa", jwt.SigningMethodRS256, keys.rsa}
	v := verifier(t, auth.StaticKeys{"rsa": &keys.rsa.PublicKey}, now)

	p, err := v.Verify(context.Background(), rs.sign(t, userClaims(now, nil)))
	require.NoError(t, err)
	assert.Equal(t, auth.User, p.Kind)
	assert.Equal(t, "Dr Jane Smith", p.Name)
	assert.Equal(t, "555021935107", p.UserID)
	assert.Equal(t, "Nurse Access Role", p.RoleName)
	assert.Equal(t, "RBA", p.OrgCode, "the selected role's organisation, not the first role's")
	assert.Equal(t, "Somerset NHS Foundation Trust", p.OrgName)
	assert.True(t, p.Allows("Flag", auth.Read))
	assert.False(t, p.Allows("Flag", auth.SilentRead), "B0170 belongs to a role that is not selected")
	assert.False(t, p.Allows("EpisodeOfCare", auth.Write))

	p, err = v.Verify(context.Background(), rs.sign(t, systemClaims(now)))
	require.NoError(t, err)
	assert.Equal(t, auth.System, p.Kind)
	assert.Equal(t, "LA001", p.OrgCode)
	assert.Equal(t, []string{"EpisodeOfCare.write", "Flag.read"}, p.Permissions())
}

func TestScopes(t *testing.T) {
	testKeys(t)
	now := time.Now()
	rs := signer{"rsa", jwt.SigningMethodRS256, keys.rsa}
	v := verifier(t, auth.StaticKeys{"rsa": &keys.rsa.PublicKey}, now)
	for _, tc := range []struct {
		scope string
		want  []string
	}{
		{"system/EpisodeOfCare.*", []string{"EpisodeOfCare.read", "EpisodeOfCare.write"}},
		{"system/*.read", []string{"EpisodeOfCare.read", "Flag.read", "Organization.read", "AuditEvent.read", "DataQuality.read", "Subscription.read", "Export.read"}},
		{"system/Subscription.*", []string{"Subscription.read", "Subscription.write"}},
		{"system/Subscription.cruds", []string{"Subscription.read", "Subscription.write"}},
		{"system/Export.read", []string{"Export.read"}},
		{"system/DataQuality.read", []string{"DataQuality.read"}},
		{"system/DataQuality.write", nil},
		{"system/Flag.write system/AuditEvent.write", nil},
		{"system/EpisodeOfCare.cruds", []string{"EpisodeOfCare.read", "EpisodeOfCare.write"}},
		{"system/EpisodeOfCare.rs", []string{"EpisodeOfCare.read"}},
		{"system/EpisodeOfCare.cu", []string{"EpisodeOfCare.write"}},
		{"system/EpisodeOfCare.sr", nil},
		{"system/EpisodeOfCare.rs?patient=x", nil},
		{"user/EpisodeOfCare.read patient/Flag.read", nil},
		{"system/Patient.read", nil},
	} {
		t.Run(tc.scope, func(t *testing.T) {
			c := systemClaims(now)
			c["scope"] = tc.scope
			p, err := v.Verify(context.Background(), rs.sign(t, c))
			require.NoError(t, err)
			assert.Equal(t, tc.want, p.Permissions())
		})
	}
}

// TestJWKSRotationOverHTTP serves a JWKS over HTTP, rotates it mid-test and
// checks the verifier picks up the new key without a restart.
func TestJWKSRotationOverHTTP(t *testing.T) {
	testKeys(t)
	var current atomic.Value
	current.Store(jwks(rsaJWK("k1", &keys.rsa.PublicKey)))
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write(current.Load().([]byte))
	}))
	defer srv.Close()

	ks, err := auth.URLKeys(context.Background(), srv.URL, auth.KeyOptions{MinInterval: time.Millisecond})
	require.NoError(t, err)
	now := time.Now()
	v := verifier(t, ks, now)
	k1 := signer{"k1", jwt.SigningMethodRS256, keys.rsa}
	k2 := signer{"k2", jwt.SigningMethodRS256, keys.rsa2}

	_, err = v.Verify(context.Background(), k1.sign(t, userClaims(now, nil)))
	require.NoError(t, err)
	_, err = v.Verify(context.Background(), k2.sign(t, userClaims(now, nil)))
	require.Error(t, err, "k2 is not published yet")

	// Rotate: k2 in, k1 out.
	current.Store(jwks(rsaJWK("k2", &keys.rsa2.PublicKey)))
	time.Sleep(5 * time.Millisecond)
	_, err = v.Verify(context.Background(), k2.sign(t, userClaims(now, nil)))
	require.NoError(t, err, "an unknown kid makes the verifier fetch the JWKS again")
	before := fetches.Load()
	for i := 0; i < 20; i++ {
		_, err = v.Verify(context.Background(), k2.sign(t, userClaims(now.Add(time.Duration(i)*time.Second), nil)))
		require.NoError(t, err)
	}
	assert.Equal(t, before, fetches.Load(), "known keys are not fetched again")
}

func TestJWKSUnreachable(t *testing.T) {
	testKeys(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	url := srv.URL
	srv.Close()
	ks, err := auth.URLKeys(context.Background(), url, auth.KeyOptions{Timeout: 200 * time.Millisecond})
	require.Error(t, err, "the first fetch fails")
	now := time.Now()
	v := verifier(t, ks, now)
	_, err = v.Verify(context.Background(), signer{"k1", jwt.SigningMethodRS256, keys.rsa}.sign(t, userClaims(now, nil)))
	require.Error(t, err)
	assert.ErrorIs(t, err, auth.ErrKeysUnavailable, "unreachable keys are a 503, not a 401")
}

func TestJWKSRefusesSymmetricKeys(t *testing.T) {
	_, err := auth.ParseJWKS([]byte(`{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}`))
	assert.Error(t, err)
	_, err = auth.ParseJWKS([]byte(`{"keys":[{"kty":"RSA","kid":"small","n":"AQAB","e":"AQAB"}]}`))
	assert.Error(t, err, "RSA keys under 2048 bits are refused")
}

func TestExpiryIsCheckedOnCachedTokens(t *testing.T) {
	testKeys(t)
	now := time.Now()
	clock := now
	v, err := auth.NewVerifier(auth.Config{Keys: auth.StaticKeys{"rsa": &keys.rsa.PublicKey}, Issuer: iss, Audience: aud,
		RBAC: auth.DefaultRBAC(), Now: func() time.Time { return clock }})
	require.NoError(t, err)
	tok := signer{"rsa", jwt.SigningMethodRS256, keys.rsa}.sign(t, userClaims(now, func(c jwt.MapClaims) { c["exp"] = now.Add(time.Minute).Unix() }))
	_, err = v.Verify(context.Background(), tok)
	require.NoError(t, err)
	clock = now.Add(3 * time.Minute)
	_, err = v.Verify(context.Background(), tok)
	require.Error(t, err, "a cached token still expires")
}

func TestRBACFile(t *testing.T) {
	for _, tc := range []struct {
		name, body, err string
	}{
		{"ok", `{"B0107":["Flag.read"],"B9999":["AuditEvent.silent-read"]}`, ""},
		{"write-refused", `{"B0107":["EpisodeOfCare.write"]}`, "cannot be granted write"},
		{"unknown-type", `{"B0107":["Patient.read"]}`, "Type.access"},
		{"bad-code", `{"admin":["Flag.read"]}`, "activity code"},
		{"bad-access", `{"B0107":["Flag.delete"]}`, "read or silent-read"},
		{"not-json", `[`, "JSON"},
		{"empty", `{}`, "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := auth.ParseRBAC([]byte(tc.body))
			if tc.err == "" {
				require.NoError(t, err)
				assert.NotEmpty(t, r.Permissions([]string{"B9999"}))
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.err)
		})
	}
}

func TestLocalKey(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	kids := make([]string, 4)
	for i := range kids {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			k, _, err := auth.LoadOrCreateLocalKey(dir)
			require.NoError(t, err)
			kids[i] = k.KID()
		}(i)
	}
	wg.Wait()
	for _, k := range kids {
		assert.Equal(t, kids[0], k, "processes starting together agree on one key")
	}
	info, err := os.Stat(filepath.Join(dir, auth.LocalKeyFile))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	k, created, err := auth.LoadOrCreateLocalKey(dir)
	require.NoError(t, err)
	assert.False(t, created)
	ks, err := auth.ParseJWKS(k.JWKS())
	require.NoError(t, err)
	assert.Contains(t, ks, k.KID())
}

// TestHazard_RemovedJWKSKeyStillVerifies: the identity provider removes a
// key (compromised, retired) from its JWKS. Within the refresh interval the
// server stops accepting tokens signed with it, including tokens it had
// already verified and cached; tokens of the keys that stay still verify.
func TestHazard_RemovedJWKSKeyStillVerifies(t *testing.T) {
	testKeys(t)
	var current atomic.Value
	current.Store(jwks(rsaJWK("k1", &keys.rsa.PublicKey), rsaJWK("k2", &keys.rsa2.PublicKey)))
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write(current.Load().([]byte))
	}))
	defer srv.Close()
	// Unknown kids may not fetch again within the test: only the periodic
	// refresh can notice the removal.
	ks, err := auth.URLKeys(t.Context(), srv.URL, auth.KeyOptions{RefreshInterval: 100 * time.Millisecond, MinInterval: time.Hour})
	require.NoError(t, err)
	now := time.Now()
	v := verifier(t, ks, now)
	k1 := signer{"k1", jwt.SigningMethodRS256, keys.rsa}.sign(t, userClaims(now, nil))
	k2 := signer{"k2", jwt.SigningMethodRS256, keys.rsa2}.sign(t, userClaims(now, nil))
	for _, tok := range []string{k1, k2} {
		_, err = v.Verify(context.Background(), tok)
		require.NoError(t, err)
	}

	current.Store(jwks(rsaJWK("k2", &keys.rsa2.PublicKey)))
	waitForFetches(t, &fetches, 2)

	_, err = v.Verify(context.Background(), k1)
	require.Error(t, err, "a cached token whose key was removed is no longer trusted")
	assert.ErrorIs(t, err, auth.ErrUnauthorised)
	assert.NotErrorIs(t, err, auth.ErrKeysUnavailable)
	_, err = v.Verify(context.Background(), signer{"k1", jwt.SigningMethodRS256, keys.rsa}.sign(t, userClaims(now.Add(time.Second), nil)))
	require.Error(t, err, "a new token signed with the removed key is refused")
	_, err = v.Verify(context.Background(), k2)
	require.NoError(t, err, "the key that stays still verifies")
}

// A key replaced under the same kid ends the tokens the old key signed.
func TestHazard_ReplacedJWKSKeyStillVerifiesCachedToken(t *testing.T) {
	testKeys(t)
	var current atomic.Value
	current.Store(jwks(rsaJWK("k1", &keys.rsa.PublicKey)))
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Write(current.Load().([]byte))
	}))
	defer srv.Close()
	ks, err := auth.URLKeys(t.Context(), srv.URL, auth.KeyOptions{RefreshInterval: 100 * time.Millisecond, MinInterval: time.Hour})
	require.NoError(t, err)
	now := time.Now()
	v := verifier(t, ks, now)
	old := signer{"k1", jwt.SigningMethodRS256, keys.rsa}.sign(t, userClaims(now, nil))
	_, err = v.Verify(context.Background(), old)
	require.NoError(t, err)
	current.Store(jwks(rsaJWK("k1", &keys.rsa2.PublicKey)))
	waitForFetches(t, &fetches, 2)
	_, err = v.Verify(context.Background(), old)
	require.Error(t, err, "the cached token was verified with a key that is no longer k1")
	_, err = v.Verify(context.Background(), signer{"k1", jwt.SigningMethodRS256, keys.rsa2}.sign(t, userClaims(now, nil)))
	require.NoError(t, err)
}

// The same for a JWKS file: it is read again once its keys are older than
// the refresh interval.
func TestHazard_RemovedFileKeyStillVerifies(t *testing.T) {
	testKeys(t)
	path := filepath.Join(t.TempDir(), "jwks.json")
	require.NoError(t, os.WriteFile(path, jwks(rsaJWK("k1", &keys.rsa.PublicKey), rsaJWK("k2", &keys.rsa2.PublicKey)), 0o600))
	ks, err := auth.FileKeys(path, auth.KeyOptions{RefreshInterval: 50 * time.Millisecond, MinInterval: 10 * time.Millisecond})
	require.NoError(t, err)
	now := time.Now()
	v := verifier(t, ks, now)
	k1 := signer{"k1", jwt.SigningMethodRS256, keys.rsa}.sign(t, userClaims(now, nil))
	k2 := signer{"k2", jwt.SigningMethodRS256, keys.rsa2}.sign(t, userClaims(now, nil))
	_, err = v.Verify(context.Background(), k1)
	require.NoError(t, err)

	require.NoError(t, os.WriteFile(path, jwks(rsaJWK("k2", &keys.rsa2.PublicKey)), 0o600))
	time.Sleep(100 * time.Millisecond)
	_, err = v.Verify(context.Background(), k1)
	require.Error(t, err, "a cached token whose key was removed from the file is no longer trusted")
	_, err = v.Verify(context.Background(), k2)
	require.NoError(t, err)
}

// The JWKS becoming unreachable after a start keeps the known keys (no
// outage for every user) and answers unknown kids with 503, not 401.
func TestJWKSUnreachableLater(t *testing.T) {
	testKeys(t)
	var down atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.Write(jwks(rsaJWK("k1", &keys.rsa.PublicKey)))
	}))
	defer srv.Close()
	ks, err := auth.URLKeys(t.Context(), srv.URL, auth.KeyOptions{RefreshInterval: 50 * time.Millisecond, MinInterval: time.Millisecond})
	require.NoError(t, err)
	now := time.Now()
	v := verifier(t, ks, now)
	down.Store(true)
	time.Sleep(150 * time.Millisecond)
	_, err = v.Verify(context.Background(), signer{"k1", jwt.SigningMethodRS256, keys.rsa}.sign(t, userClaims(now, nil)))
	require.NoError(t, err, "the keys already fetched stay in use")
	_, err = v.Verify(context.Background(), signer{"k9", jwt.SigningMethodRS256, keys.rsa2}.sign(t, userClaims(now, nil)))
	assert.ErrorIs(t, err, auth.ErrKeysUnavailable)
}

// waitForFetches waits (at most 2 s) until the JWKS has been fetched n more
// times, so the latest document has been read at least once.
func waitForFetches(t *testing.T, fetches *atomic.Int32, n int32) {
	t.Helper()
	start := fetches.Load()
	deadline := time.Now().Add(2 * time.Second)
	for fetches.Load() < start+n {
		require.True(t, time.Now().Before(deadline), "the JWKS was not fetched again within 2 s")
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // the last fetch's document is stored
}

// A JWKS that also holds keys the server does not use (an encryption key,
// an Ed25519 key, a malformed key) still verifies with its signing keys,
// when fetched first and when fetched again.
func TestJWKSWithKeysTheServerDoesNotUse(t *testing.T) {
	testKeys(t)
	others := []map[string]string{
		{"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
		{"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
		{"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
	}
	var current atomic.Value
	current.Store(jwks(append([]map[string]string{rsaJWK("k1", &keys.rsa.PublicKey)}, others...)...))
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Write(current.Load().([]byte))
	}))
	defer srv.Close()
	ks, err := auth.URLKeys(t.Context(), srv.URL, auth.KeyOptions{RefreshInterval: 100 * time.Millisecond})
	require.NoError(t, err)
	now := time.Now()
	v := verifier(t, ks, now)
	_, err = v.Verify(context.Background(), signer{"k1", jwt.SigningMethodRS256, keys.rsa}.sign(t, userClaims(now, nil)))
	require.NoError(t, err)

	// The provider now publishes nothing usable: the keys held stay.
	current.Store(jwks(others...))
	waitForFetches(t, &fetches, 2)
	_, err = v.Verify(context.Background(), signer{"k1", jwt.SigningMethodRS256, keys.rsa}.sign(t, userClaims(now.Add(time.Second), nil)))
	require.NoError(t, err, "a JWKS with no usable key is a failed fetch, not an empty key set")
}
