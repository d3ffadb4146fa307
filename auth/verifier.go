package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"cpis/fhir"
)

// Algorithms are the signing algorithms accepted: never none, never HMAC.
func Algorithms() []string { return []string{"RS256", "RS512", "PS256", "ES256"} }

// Leeway is the clock skew allowed on exp, nbf and iat.
const Leeway = 60 * time.Second

// MaxTokenLength bounds the Authorization header a token may fill.
const MaxTokenLength = 16 << 10

// ErrUnauthorised is wrapped by every token failure.
var ErrUnauthorised = errors.New("auth: unauthorised")

// TokenError is why a token was refused, in words safe to show the caller:
// never a claim value or key detail.
type TokenError struct {
	Reason string
	Err    error // internal cause, for the server log only
}

func (e *TokenError) Error() string {
	if e.Err != nil {
		return "auth: " + e.Reason + ": " + e.Err.Error()
	}
	return "auth: " + e.Reason
}

// Unwrap lets errors.Is find ErrUnauthorised or ErrKeysUnavailable.
func (e *TokenError) Unwrap() []error {
	if errors.Is(e.Err, ErrKeysUnavailable) {
		return []error{ErrKeysUnavailable}
	}
	return []error{ErrUnauthorised, e.Err}
}

func refuse(reason string, err error) error { return &TokenError{Reason: reason, Err: err} }

// Config is what a Verifier checks tokens against.
type Config struct {
	Keys     KeySource
	Issuer   string
	Audience string
	RBAC     *RBAC
	Now      func() time.Time
	// CacheSize bounds the verified-token cache (default 10,000).
	CacheSize int
	// CacheTTL bounds how long a verified token is trusted without
	// checking its signature again (default 5 minutes).
	CacheTTL time.Duration
	// MaxLifetime bounds a token's exp - iat, or without iat how far ahead
	// its exp may be (default DefaultMaxLifetime).
	MaxLifetime time.Duration
}

// DefaultMaxLifetime is the longest token lifetime accepted by default.
const DefaultMaxLifetime = 24 * time.Hour

// Verifier checks bearer tokens and builds principals. Verified tokens are
// cached by their SHA-256, so a client reusing a token is not verified again
// on every request; expiry is still checked on every use.
type Verifier struct {
	cfg    Config
	parser *jwt.Parser

	mu    sync.RWMutex
	cache map[[32]byte]cached
}

// cached is a verified token: its principal, its validity, and the key
// that verified it, so that it stops being trusted once that key is gone
// from the key set.
type cached struct {
	p        *Principal
	exp, nbf time.Time
	until    time.Time
	kid      string
	key      crypto.PublicKey
}

// NewVerifier builds a verifier. Issuer, Audience, Keys and RBAC are required.
func NewVerifier(cfg Config) (*Verifier, error) {
	if cfg.Keys == nil || cfg.Issuer == "" || cfg.Audience == "" || cfg.RBAC == nil {
		return nil, fmt.Errorf("auth: verifier needs keys, issuer, audience and an RBAC table")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 10000
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = 5 * time.Minute
	}
	if cfg.MaxLifetime <= 0 {
		cfg.MaxLifetime = DefaultMaxLifetime
	}
	p := jwt.NewParser(
		jwt.WithValidMethods(Algorithms()),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(Leeway),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithTimeFunc(cfg.Now),
	)
	return &Verifier{cfg: cfg, parser: p, cache: map[[32]byte]cached{}}, nil
}

// claims are the token claims the server reads: CIS2 user claims and the
// system-token claims.
type claims struct {
	jwt.RegisteredClaims
	Name           string    `json:"name"`
	UserUID        string    `json:"nhsid_useruid"`
	SelectedRoleID string    `json:"selected_roleid"`
	Roles          []role    `json:"nhsid_nrbac_roles"`
	UserOrgs       []userOrg `json:"nhsid_user_orgs"`
	OrgCode        string    `json:"org_code"`
	OrgName        string    `json:"org_name"`
	Scope          string    `json:"scope"`
}

type role struct {
	PersonRoleID  string   `json:"person_roleid"`
	OrgCode       string   `json:"org_code"`
	RoleName      string   `json:"role_name"`
	RoleCode      string   `json:"role_code"`
	ActivityCodes []string `json:"activity_codes"`
}

type userOrg struct {
	OrgCode string `json:"org_code"`
	OrgName string `json:"org_name"`
}

// Verify checks a bearer token and returns its principal.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Principal, error) {
	if raw == "" {
		return nil, refuse("no access token", nil)
	}
	if len(raw) > MaxTokenLength {
		return nil, refuse("the access token is too long", nil)
	}
	now := v.cfg.Now()
	sum := sha256.Sum256([]byte(raw))
	v.mu.RLock()
	c, ok := v.cache[sum]
	v.mu.RUnlock()
	if ok && now.Before(c.until) {
		switch {
		case !now.Before(c.exp.Add(Leeway)):
			return nil, refuse("the access token has expired", nil)
		case !c.nbf.IsZero() && now.Add(Leeway).Before(c.nbf):
			return nil, refuse("the access token is not valid yet", nil)
		}
		// The key that verified it must still be trusted: a key removed
		// from the JWKS ends the tokens it signed, cached or not.
		k, err := v.cfg.Keys.Key(ctx, c.kid)
		if errors.Is(err, ErrKeysUnavailable) {
			return nil, refuse("the token signing keys are unavailable", ErrKeysUnavailable)
		}
		if err == nil && k == c.key { // the same key object: no reload since
			return c.p, nil
		}
		if err == nil && sameKey(k, c.key) {
			// Reloaded, the same key: remember the new object so the next
			// check is the cheap one.
			v.mu.Lock()
			if e, ok := v.cache[sum]; ok {
				e.key = k
				v.cache[sum] = e
			}
			v.mu.Unlock()
			return c.p, nil
		}
		v.mu.Lock()
		delete(v.cache, sum)
		v.mu.Unlock()
	}

	if err := checkRaw(raw); err != nil {
		return nil, err
	}
	var cl claims
	var kid string
	var key crypto.PublicKey
	_, err := v.parser.ParseWithClaims(raw, &cl, func(t *jwt.Token) (any, error) {
		k, err := v.key(ctx, t)
		kid, _ = t.Header["kid"].(string)
		key = k
		return k, err
	})
	if err != nil {
		return nil, classify(err)
	}
	if err := v.checkLifetime(&cl, now); err != nil {
		return nil, err
	}
	p, err := v.principal(&cl)
	if err != nil {
		return nil, err
	}
	entry := cached{p: p, exp: cl.ExpiresAt.Time, until: now.Add(v.cfg.CacheTTL), kid: kid, key: key}
	if cl.NotBefore != nil {
		entry.nbf = cl.NotBefore.Time
	}
	v.mu.Lock()
	if len(v.cache) >= v.cfg.CacheSize {
		// Drop about a tenth of the entries, arbitrarily chosen.
		n := v.cfg.CacheSize / 10
		for k := range v.cache {
			delete(v.cache, k)
			if n--; n <= 0 {
				break
			}
		}
	}
	v.cache[sum] = entry
	v.mu.Unlock()
	return p, nil
}

// checkRaw reads the token's header and payload before the signature is
// checked, for what golang-jwt does not refuse: algorithms other than the
// accepted ones (so none and HMAC are refused for what they are), critical
// header parameters (RFC 7515 §4.1.11: the server understands none, so a
// token that names any is refused), and exp, nbf or iat that are not JSON
// numbers (golang-jwt reads a string "1700000000" as a date).
func checkRaw(raw string) error {
	head, rest, ok := strings.Cut(raw, ".")
	if !ok {
		return refuse("the access token is malformed", nil)
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(head, "="))
	if err != nil {
		return refuse("the access token is malformed", err)
	}
	var h struct {
		Alg  string          `json:"alg"`
		Crit json.RawMessage `json:"crit"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return refuse("the access token is malformed", err)
	}
	if !slices.Contains(Algorithms(), h.Alg) {
		return refuse("the access token cannot be verified (algorithm not accepted)", nil)
	}
	if h.Crit != nil {
		return refuse("the access token names critical header parameters (crit) the server does not understand", nil)
	}
	body, _, ok := strings.Cut(rest, ".")
	if !ok {
		return refuse("the access token is malformed", nil)
	}
	if b, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(body, "=")); err != nil {
		return refuse("the access token is malformed", err)
	}
	var times struct {
		Exp json.RawMessage `json:"exp"`
		Nbf json.RawMessage `json:"nbf"`
		Iat json.RawMessage `json:"iat"`
	}
	if err := json.Unmarshal(b, &times); err != nil {
		return refuse("the access token is malformed", err)
	}
	for _, t := range []json.RawMessage{times.Exp, times.Nbf, times.Iat} {
		if t != nil && (len(t) == 0 || (t[0] != '-' && (t[0] < '0' || t[0] > '9'))) {
			return refuse("the access token's exp, nbf and iat must be JSON numbers", nil)
		}
	}
	return nil
}

// checkLifetime refuses a token that lives longer than MaxLifetime: by
// exp - iat, or without iat by how far ahead its exp is.
func (v *Verifier) checkLifetime(cl *claims, now time.Time) error {
	if cl.IssuedAt != nil {
		if cl.ExpiresAt.Sub(cl.IssuedAt.Time) > v.cfg.MaxLifetime {
			return refuse("the access token's lifetime (exp - iat) is longer than this server accepts", nil)
		}
		return nil
	}
	if cl.ExpiresAt.Sub(now) > v.cfg.MaxLifetime+Leeway {
		return refuse("the access token expires further ahead than this server accepts", nil)
	}
	return nil
}

// sameKey reports whether two public keys are the same key.
func sameKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && b != nil && k.Equal(b)
}

// key finds the verification key for a token and checks it suits the
// token's algorithm.
func (v *Verifier) key(ctx context.Context, t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	if kid == "" {
		return nil, refuse("the access token header has no kid", nil)
	}
	k, err := v.cfg.Keys.Key(ctx, kid)
	if err != nil {
		return nil, err
	}
	alg := t.Method.Alg()
	switch pub := k.(type) {
	case *rsa.PublicKey:
		if strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS") {
			return pub, nil
		}
	case *ecdsa.PublicKey:
		if alg == "ES256" && pub.Curve == elliptic.P256() {
			return pub, nil
		}
	}
	return nil, refuse("the access token's algorithm does not match its key", nil)
}

// classify turns a golang-jwt error into a refusal with a safe reason.
func classify(err error) error {
	var te *TokenError
	switch {
	case errors.As(err, &te):
		return te
	case errors.Is(err, ErrKeysUnavailable):
		return refuse("the token signing keys are unavailable", ErrKeysUnavailable)
	case errors.Is(err, ErrUnknownKey):
		return refuse("the access token was signed by an unknown key", err)
	case errors.Is(err, jwt.ErrTokenMalformed):
		return refuse("the access token is malformed", err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return refuse("the access token signature is invalid", err)
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return refuse("the access token cannot be verified (algorithm not accepted)", err)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return refuse("the access token has no expiry", err)
	case errors.Is(err, jwt.ErrTokenExpired):
		return refuse("the access token has expired", err)
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return refuse("the access token is not valid yet", err)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return refuse("the access token has the wrong issuer", err)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return refuse("the access token has the wrong audience", err)
	case errors.Is(err, jwt.ErrTokenInvalidClaims):
		return refuse("the access token's claims are invalid", err)
	}
	return refuse("the access token is invalid", err)
}

// principal builds the caller from verified claims: a user token when it
// carries CIS2 role claims, otherwise a system token.
func (v *Verifier) principal(cl *claims) (*Principal, error) {
	if cl.Subject == "" {
		return nil, refuse("the access token has no subject", nil)
	}
	if cl.SelectedRoleID != "" || len(cl.Roles) > 0 {
		return v.user(cl)
	}
	if cl.Scope == "" || cl.OrgCode == "" {
		return nil, refuse("the access token is neither a CIS2 user token (selected_roleid) nor a system token (scope and org_code)", nil)
	}
	if !fhir.ValidODSCode(cl.OrgCode) {
		return nil, refuse("the access token's org_code is not an ODS code", nil)
	}
	scopes := strings.Fields(cl.Scope)
	return NewPrincipal(Principal{
		Kind: System, Subject: cl.Subject, OrgCode: cl.OrgCode, OrgName: cl.OrgName, Scopes: scopes,
	}, scopePermissions(scopes)), nil
}

func (v *Verifier) user(cl *claims) (*Principal, error) {
	if cl.SelectedRoleID == "" {
		return nil, refuse("the access token has no selected_roleid", nil)
	}
	var sel *role
	for i := range cl.Roles {
		if cl.Roles[i].PersonRoleID == cl.SelectedRoleID {
			sel = &cl.Roles[i]
			break
		}
	}
	if sel == nil {
		return nil, refuse("the access token's selected_roleid matches none of its nhsid_nrbac_roles", nil)
	}
	if sel.OrgCode == "" {
		return nil, refuse("the access token's selected role has no org_code", nil)
	}
	if !slices.ContainsFunc(cl.UserOrgs, func(o userOrg) bool { return o.OrgCode == sel.OrgCode }) {
		return nil, refuse("the access token's selected role is at an organisation not among its nhsid_user_orgs", nil)
	}
	p := Principal{
		Kind: User, Subject: cl.Subject, Name: cl.Name, UserID: cl.UserUID,
		RoleID: sel.PersonRoleID, RoleName: sel.RoleName, RoleCode: sel.RoleCode, OrgCode: sel.OrgCode,
	}
	if p.UserID == "" {
		p.UserID = cl.Subject
	}
	for _, o := range cl.UserOrgs {
		if o.OrgCode == sel.OrgCode {
			p.OrgName = o.OrgName
		}
	}
	return NewPrincipal(p, v.cfg.RBAC.Permissions(sel.ActivityCodes)), nil
}
