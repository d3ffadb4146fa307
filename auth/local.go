package auth

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Local mode defaults: the issuer and audience of self-issued tokens.
const (
	LocalIssuer   = "cpis-local"
	LocalAudience = "cpis"
	// LocalKeyFile is the signing key's file in the data directory.
	LocalKeyFile = "local-signing-key.pem"
)

// LocalKey is the server's own signing key, used when no JWKS is configured.
type LocalKey struct {
	key *rsa.PrivateKey
	kid string
}

// LoadOrCreateLocalKey reads the signing key from dir, creating it (mode
// 0600) if there is none. created reports whether it was made now. Several
// processes starting at once agree on one key.
func LoadOrCreateLocalKey(dir string) (k *LocalKey, created bool, err error) {
	path := filepath.Join(dir, LocalKeyFile)
	if k, err := readLocalKey(path); err == nil {
		return k, false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, false, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("auth: creating data dir: %w", err)
	}
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, false, fmt.Errorf("auth: generating the local signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, false, fmt.Errorf("auth: encoding the local signing key: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".signing-key-*")
	if err != nil {
		return nil, false, fmt.Errorf("auth: writing the local signing key: %w", err)
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(0o600)
	if err == nil {
		err = pem.Encode(tmp, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
		if err == nil {
			err = tmp.Sync()
		}
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, false, fmt.Errorf("auth: writing the local signing key: %w", err)
	}
	// Link fails if another process made the key first; then use theirs.
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, false, fmt.Errorf("auth: saving the local signing key: %w", err)
	} else if err != nil {
		k, err := readLocalKey(path)
		return k, false, err
	}
	k, err = readLocalKey(path)
	return k, err == nil, err
}

func readLocalKey(path string) (*LocalKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("auth: %s is not a PEM key", path)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("auth: %s: %w", path, err)
	}
	priv, ok := parsed.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("auth: %s is not an RSA key", path)
	}
	return newLocalKey(priv), nil
}

func newLocalKey(priv *rsa.PrivateKey) *LocalKey {
	der, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	sum := sha256.Sum256(der)
	return &LocalKey{key: priv, kid: base64.RawURLEncoding.EncodeToString(sum[:12])}
}

// KID is the key's id.
func (k *LocalKey) KID() string { return k.kid }

// Keys is the key set that verifies this key's tokens.
func (k *LocalKey) Keys() KeySource { return StaticKeys{k.kid: &k.key.PublicKey} }

// JWKS is the public key as a JSON Web Key Set.
func (k *LocalKey) JWKS() []byte {
	pub := k.key.PublicKey
	doc := map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "use": "sig", "alg": "RS256", "kid": k.kid,
		"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}}}
	b, _ := json.Marshal(doc)
	return b
}

// Sign signs any claims with RS256 under this key's kid.
func (k *LocalKey) Sign(c jwt.Claims) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	t.Header["kid"] = k.kid
	return t.SignedString(k.key)
}

// UserToken describes a CIS2-style user token to mint.
type UserToken struct {
	Subject    string // defaults to UserID
	Name       string
	UserID     string
	RoleID     string
	RoleName   string
	RoleCode   string
	OrgCode    string
	OrgName    string
	Activities []string
}

// SystemToken describes a local authority system token to mint.
type SystemToken struct {
	ClientID string
	OrgCode  string
	OrgName  string
	Scopes   []string
}

// Lifetime bounds for minted tokens.
const MaxLifetime = 24 * time.Hour

// MintUser signs a user token shaped as NHS CIS2 issues them.
func (k *LocalKey) MintUser(u UserToken, issuer, audience string, now time.Time, lifetime time.Duration) (string, error) {
	if u.Subject == "" {
		u.Subject = u.UserID
	}
	roles := []map[string]any{{
		"person_roleid": u.RoleID, "org_code": u.OrgCode, "role_name": u.RoleName,
		"role_code": u.RoleCode, "activity_codes": u.Activities,
	}}
	c := jwt.MapClaims{
		"iss": issuer, "aud": audience, "sub": u.Subject,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(lifetime).Unix(),
		"name": u.Name, "nhsid_useruid": u.UserID, "selected_roleid": u.RoleID,
		"nhsid_nrbac_roles": roles,
		"nhsid_user_orgs":   []map[string]string{{"org_code": u.OrgCode, "org_name": u.OrgName}},
	}
	return k.Sign(c)
}

// MintSystem signs a system token for a local authority.
func (k *LocalKey) MintSystem(s SystemToken, issuer, audience string, now time.Time, lifetime time.Duration) (string, error) {
	c := jwt.MapClaims{
		"iss": issuer, "aud": audience, "sub": s.ClientID,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(lifetime).Unix(),
		"org_code": s.OrgCode, "org_name": s.OrgName, "scope": strings.Join(s.Scopes, " "),
	}
	return k.Sign(c)
}
