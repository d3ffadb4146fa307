package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"sync"
	"time"
)

// Key lookup errors.
var (
	// ErrUnknownKey: no trusted key has the token's kid.
	ErrUnknownKey = errors.New("auth: unknown signing key")
	// ErrKeysUnavailable: the trusted keys could not be fetched, so no token
	// can be checked. Callers answer 503, not 401.
	ErrKeysUnavailable = errors.New("auth: signing keys unavailable")
)

// KeySource finds a trusted public key by kid.
type KeySource interface {
	Key(ctx context.Context, kid string) (crypto.PublicKey, error)
}

// jwk is one JSON Web Key; only public RSA and EC P-256 signing keys are
// used, so a symmetric ("oct") key can never verify a token.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// ParseJWKS reads a JWKS document into kid → public key. Keys that are not
// signing keys of a supported kind are skipped; a document with none is an
// error.
func ParseJWKS(b []byte) (map[string]crypto.PublicKey, error) {
	var doc struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("JWKS is not a JSON Web Key Set")
	}
	keys := map[string]crypto.PublicKey{}
	for _, k := range doc.Keys {
		if k.Kid == "" || (k.Use != "" && k.Use != "sig") {
			continue
		}
		pub, err := k.public()
		if err != nil {
			return nil, fmt.Errorf("JWKS key %q: %w", k.Kid, err)
		}
		if pub != nil {
			keys[k.Kid] = pub
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("JWKS holds no RSA or EC P-256 signing key with a kid")
	}
	return keys, nil
}

func (k jwk) public() (crypto.PublicKey, error) {
	switch k.Kty {
	case "RSA":
		n, err := b64int(k.N)
		if err != nil {
			return nil, fmt.Errorf("bad modulus")
		}
		e, err := b64int(k.E)
		if err != nil || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
			return nil, fmt.Errorf("bad exponent")
		}
		if n.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA keys must be at least 2048 bits")
		}
		return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
	case "EC":
		if k.Crv != "P-256" {
			return nil, nil
		}
		x, err1 := base64.RawURLEncoding.DecodeString(k.X)
		y, err2 := base64.RawURLEncoding.DecodeString(k.Y)
		if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
			return nil, fmt.Errorf("bad EC point")
		}
		// ParseUncompressedPublicKey checks the point is on P-256.
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, fmt.Errorf("EC point is not on P-256")
		}
		return pub, nil
	}
	return nil, nil
}

func b64int(s string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("bad base64url")
	}
	return new(big.Int).SetBytes(b), nil
}

// StaticKeys is a fixed key set.
type StaticKeys map[string]crypto.PublicKey

// Key implements KeySource.
func (s StaticKeys) Key(_ context.Context, kid string) (crypto.PublicKey, error) {
	if k, ok := s[kid]; ok {
		return k, nil
	}
	return nil, ErrUnknownKey
}

// fetcher loads a JWKS document.
type fetcher func(ctx context.Context) ([]byte, error)

// RefreshingKeys is a JWKS read from a file or URL, cached, and read again
// when a token names a kid it does not hold (at most once per MinInterval)
// or when it is older than MaxAge.
type RefreshingKeys struct {
	fetch       fetcher
	minInterval time.Duration
	maxAge      time.Duration
	now         func() time.Time

	mu          sync.RWMutex
	keys        map[string]crypto.PublicKey
	fetched     time.Time
	lastAttempt time.Time
	lastErr     error
	refresh     sync.Mutex
}

// KeyOptions tune refreshing.
type KeyOptions struct {
	// MinInterval is the least time between two reloads made because a
	// token named an unknown kid (default 30 s).
	MinInterval time.Duration
	// RefreshInterval is how often the JWKS is read again whatever tokens
	// arrive, so that a key removed from it stops verifying (default 5 min).
	// A file is read again on the first use after this; a URL is fetched
	// in the background.
	RefreshInterval time.Duration
	// MaxAge is kept for callers that set it: the file is read again when
	// its keys are older than the smaller of MaxAge and RefreshInterval.
	MaxAge  time.Duration
	Timeout time.Duration // HTTP timeout, default 5 s
	Client  *http.Client
	Now     func() time.Time
}

func (o KeyOptions) withDefaults() KeyOptions {
	if o.MinInterval <= 0 {
		o.MinInterval = 30 * time.Second
	}
	if o.RefreshInterval <= 0 {
		o.RefreshInterval = 5 * time.Minute
	}
	if o.MaxAge <= 0 || o.MaxAge > o.RefreshInterval {
		o.MaxAge = o.RefreshInterval
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: o.Timeout}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// FileKeys reads a JWKS file now (an unreadable or invalid file is an
// error), again when a token names an unknown kid (at most once per
// MinInterval), and again on the first use once its keys are older than
// RefreshInterval, so a key removed from the file stops verifying.
func FileKeys(path string, o KeyOptions) (*RefreshingKeys, error) {
	o = o.withDefaults()
	k := newRefreshing(func(context.Context) ([]byte, error) { return os.ReadFile(path) }, o)
	if err := k.load(context.Background()); err != nil {
		return nil, err
	}
	return k, nil
}

func newRefreshing(f fetcher, o KeyOptions) *RefreshingKeys {
	return &RefreshingKeys{fetch: f, minInterval: o.MinInterval, maxAge: o.MaxAge, now: o.Now}
}

func (k *RefreshingKeys) load(ctx context.Context) error {
	k.mu.Lock()
	k.lastAttempt = k.now()
	k.mu.Unlock()
	b, err := k.fetch(ctx)
	if err == nil {
		var keys map[string]crypto.PublicKey
		keys, err = ParseJWKS(b)
		if err == nil {
			k.mu.Lock()
			k.keys, k.fetched, k.lastErr = keys, k.now(), nil
			k.mu.Unlock()
			return nil
		}
	}
	k.mu.Lock()
	k.lastErr = err
	k.mu.Unlock()
	return fmt.Errorf("loading JWKS: %w", err)
}

// Key implements KeySource.
func (k *RefreshingKeys) Key(ctx context.Context, kid string) (crypto.PublicKey, error) {
	k.mu.RLock()
	key, ok := k.keys[kid]
	fresh := k.now().Sub(k.fetched) < k.maxAge
	k.mu.RUnlock()
	if ok && fresh {
		return key, nil
	}
	k.maybeRefresh(ctx)
	k.mu.RLock()
	defer k.mu.RUnlock()
	if key, ok := k.keys[kid]; ok {
		return key, nil
	}
	if k.keys == nil {
		return nil, ErrKeysUnavailable
	}
	return nil, ErrUnknownKey
}

// maybeRefresh reloads the set unless that was tried within minInterval;
// concurrent callers share one reload.
func (k *RefreshingKeys) maybeRefresh(ctx context.Context) {
	k.refresh.Lock()
	defer k.refresh.Unlock()
	k.mu.RLock()
	recent := k.now().Sub(k.lastAttempt) < k.minInterval
	k.mu.RUnlock()
	if recent {
		return
	}
	_ = k.load(ctx) // on failure the old keys stay in use
}
