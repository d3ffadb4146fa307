package auth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"golang.org/x/time/rate"
)

// maxJWKSBytes bounds a JWKS document fetched over HTTP.
const maxJWKSBytes = 1 << 20

// RemoteKeys is a JWKS fetched from a URL and kept by keyfunc (over jwkset):
// fetched again in the background every RefreshInterval, so that a key the
// identity provider removes stops verifying, and at once when a token names
// an unknown kid, at most once per MinInterval, never blocking a request
// to wait for that limit.
type RemoteKeys struct {
	keys    keyfunc.Keyfunc // jwkset storage with a background refresh
	refetch jwkset.Storage  // the same storage, fetching again on a miss
	unknown *rate.Limiter   // how often a miss may fetch

	mu      sync.Mutex
	lastErr error // the outcome of the latest fetch
}

// URLKeys fetches a JWKS from url now and starts refreshing it until ctx
// ends. A first fetch that fails is returned as an error but is not fatal:
// the keys are fetched again in the background and on unknown kids, and
// until a fetch succeeds key lookups return ErrKeysUnavailable.
func URLKeys(ctx context.Context, url string, o KeyOptions) (*RemoteKeys, error) {
	o = o.withDefaults()
	k := &RemoteKeys{unknown: rate.NewLimiter(rate.Every(o.MinInterval), 1)}
	client := &http.Client{Timeout: o.Timeout, Transport: fetchWatch{k: k, next: o.Client.Transport}}
	if o.Client.Transport == nil {
		client.Transport = fetchWatch{k: k, next: http.DefaultTransport}
	}
	store, err := jwkset.NewStorageFromHTTP(url, jwkset.HTTPClientStorageOptions{
		Client:                    client,
		Ctx:                       ctx,
		HTTPTimeout:               o.Timeout,
		NoErrorReturnFirstHTTPReq: true,
		RefreshErrorHandler:       func(_ context.Context, err error) { k.setErr(err) },
		RefreshInterval:           o.RefreshInterval,
	})
	if err != nil {
		return nil, fmt.Errorf("JWKS URL: %w", err)
	}
	// The limiter below never waits: k.unknown decides whether a miss may
	// fetch, before this storage is asked.
	k.refetch, err = jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs:          map[string]jwkset.Storage{url: store},
		RefreshUnknownKID: rate.NewLimiter(rate.Inf, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("JWKS URL: %w", err)
	}
	if k.keys, err = keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: store}); err != nil {
		return nil, fmt.Errorf("JWKS URL: %w", err)
	}
	if err := k.err(); err != nil {
		return k, fmt.Errorf("loading JWKS: %w", err)
	}
	return k, nil
}

// fetchWatch marks each fetch as started (clearing the last error, which
// the storage's error handler sets again if the fetch fails), bounds the
// document's size, and passes on only the keys ParseJWKS admits. jwkset
// empties its whole set when one key fails to parse, so one key of a kind
// the server does not use (an encryption key, an Ed25519 key) would
// otherwise stop every token; and a document with no usable key is passed
// on as a failed fetch, which keeps the keys already held.
type fetchWatch struct {
	k    *RemoteKeys
	next http.RoundTripper
}

func (f fetchWatch) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := f.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	f.k.setErr(nil)
	if resp.StatusCode != http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxJWKSBytes {
		return nil, fmt.Errorf("the JWKS is larger than %d bytes", maxJWKSBytes)
	}
	kept, err := usableKeys(b)
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(kept))
	resp.ContentLength = int64(len(kept))
	return resp, nil
}

// usableKeys rewrites a JWKS document to hold only the signing keys
// ParseJWKS admits.
func usableKeys(b []byte) ([]byte, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("JWKS is not a JSON Web Key Set")
	}
	kept := make([]json.RawMessage, 0, len(doc.Keys))
	for _, raw := range doc.Keys {
		var k jwk
		if json.Unmarshal(raw, &k) != nil || k.Kid == "" || (k.Use != "" && k.Use != "sig") {
			continue
		}
		if pub, err := k.public(); err == nil && pub != nil {
			kept = append(kept, raw)
		}
	}
	if len(kept) == 0 {
		return nil, fmt.Errorf("JWKS holds no RSA or EC P-256 signing key with a kid")
	}
	return json.Marshal(map[string]any{"keys": kept})
}

func (k *RemoteKeys) setErr(err error) {
	k.mu.Lock()
	k.lastErr = err
	k.mu.Unlock()
}

func (k *RemoteKeys) err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lastErr
}

// Key implements KeySource. A kid that is not held makes the set be fetched
// again (rate-limited); while the latest fetch failed, a kid not held is
// ErrKeysUnavailable (503), since the key may be one that could not be
// fetched.
func (k *RemoteKeys) Key(ctx context.Context, kid string) (crypto.PublicKey, error) {
	jwk, err := k.keys.Storage().KeyRead(ctx, kid)
	if errors.Is(err, jwkset.ErrKeyNotFound) && k.unknown.Allow() {
		jwk, err = k.refetch.KeyRead(ctx, kid)
	}
	switch {
	case errors.Is(err, jwkset.ErrKeyNotFound) && k.err() != nil:
		return nil, ErrKeysUnavailable
	case errors.Is(err, jwkset.ErrKeyNotFound):
		return nil, ErrUnknownKey
	case err != nil:
		return nil, ErrKeysUnavailable
	}
	if u := jwk.Marshal().USE; u != "" && u != jwkset.UseSig {
		return nil, ErrUnknownKey
	}
	return signingKey(jwk.Key())
}

// signingKey admits the public keys ParseJWKS admits: RSA of 2048 bits or
// more, EC on P-256. A symmetric key never verifies a token.
func signingKey(k any) (crypto.PublicKey, error) {
	switch pub := k.(type) {
	case *rsa.PrivateKey:
		return signingKey(&pub.PublicKey)
	case *ecdsa.PrivateKey:
		return signingKey(&pub.PublicKey)
	case *rsa.PublicKey:
		if pub.N.BitLen() >= 2048 {
			return pub, nil
		}
	case *ecdsa.PublicKey:
		if pub.Curve == elliptic.P256() {
			return pub, nil
		}
	}
	return nil, ErrUnknownKey
}
