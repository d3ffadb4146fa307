// Package handlers is the HTTP surface of the server: the gin routes of the
// FHIR API (routes.go lists them), request parsing and rendering, and the
// one table from error kinds to OperationOutcome responses. The use-cases
// (writes, visibility, retention, audit) are the registry's.
package handlers

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"cpis/auth"
	"cpis/fhir"
	"cpis/handlers/notify"
	"cpis/handlers/registry"
	"cpis/profiles"
	"cpis/profiles/quality"
	"cpis/store"
)

// Limits bound what one request may ask of the server.
type Limits struct {
	// MaxResourceBytes bounds the body of a single-resource write.
	MaxResourceBytes int64
	// MaxBundleBytes bounds the body of a Bundle.
	MaxBundleBytes int64
	// MaxBundleEntries bounds the entries of a Bundle.
	MaxBundleEntries int
	// MaxHeaderBytes bounds the request line and headers (431 beyond it).
	MaxHeaderBytes int
}

// DefaultLimits are the limits the CapabilityStatement and README state.
func DefaultLimits() Limits {
	return Limits{MaxResourceBytes: 1 << 20, MaxBundleBytes: 32 << 20, MaxBundleEntries: 5000, MaxHeaderBytes: 64 << 10}
}

// ServerMaxHeaderBytes is the MaxHeaderBytes to give the http.Server: well
// above Limits.MaxHeaderBytes, so that the handlers answer an oversized
// request with a 431 OperationOutcome. Only a request beyond this gets Go's
// own plain-text 431.
const ServerMaxHeaderBytes = 1 << 20

// Deps is everything the handlers need, built once by the caller.
type Deps struct {
	// Store is handed to the registry, the only part that calls it.
	Store store.Store
	Codec *fhir.Codec
	// Profiles are the CP-IS conformance resources and the validator;
	// loaded from the embedded definitions when nil.
	Profiles *profiles.Catalog
	Verifier *auth.Verifier
	Log      *slog.Logger
	// SecurityLog receives silent reads and other security events; it
	// never carries an NHS number (a keyed hash instead) or a name.
	SecurityLog *slog.Logger
	// SubjectKey keys the hash of NHS numbers in the security log.
	SubjectKey []byte
	// CursorKey (32 bytes) seals paging cursors; when nil a random key is
	// made, and paging links then last only as long as the process.
	CursorKey []byte
	// BaseURL is the public FHIR base, e.g. http://localhost:8080/FHIR/R4.
	// Its path is where the API is served (/FHIR/R4, or /cpis/FHIR/R4 as
	// the national API has it).
	BaseURL string
	// CORSOrigins are the browser origins (scheme://host[:port]) allowed to
	// call the API; none (the default) turns CORS off.
	CORSOrigins []string
	// RequestTimeout, if set, bounds the time a request may take: a request
	// still waiting on the store then is answered 503.
	RequestTimeout time.Duration
	// Location is where plan dates are read (Europe/London).
	Location      *time.Location
	RetentionDays int
	Limits        Limits
	// LocalMode says tokens are self-issued (no JWKS configured).
	LocalMode bool
	Version   string
	Now       func() time.Time
	// NewID makes ids for created resources and audit events.
	NewID func() string
	// Metrics, if set, observes requests; MetricsHandler, if set, is
	// served at /metrics.
	Metrics        Metrics
	MetricsHandler http.Handler
	// Quality is the data-quality report's thresholds; the defaults when
	// zero.
	Quality quality.Thresholds
	// QualityMaxPerRule is how many findings of each rule the
	// $data-quality report lists (DefaultQualityMaxPerRule when 0); every
	// count is exact, and ?rule= lists a rule in full, in pages.
	QualityMaxPerRule int
	// Notify manages local authorities' subscriptions and is nudged after
	// each audited read; its delivery is run by the caller (cpis serve).
	// When nil, one is made over the store (management only, no delivery),
	// if the store keeps subscriptions.
	Notify *notify.Service
	// ExportExpiry is how long a bulk export's files are kept after its
	// kick-off (1h when zero).
	ExportExpiry time.Duration
}

// Metrics observes requests; the server's Prometheus collectors implement it.
type Metrics interface {
	Request(route, method string, status int, d time.Duration)
}

// Server holds the dependencies the handlers share.
type Server struct {
	Deps
	reg           *registry.Registry
	specs         map[string]*resourceSpec
	cursors       *sealer
	basePath      string          // the path of BaseURL: where the API is served
	corsOrigins   map[string]bool // allowed browser origins, as browsers send them
	started       string          // the CapabilityStatement date: when the server started
	capabilityDoc []byte
	pong          []byte
}

// New builds the HTTP handler: the gin engine with every route of the API,
// behind response compression.
func New(d Deps) (http.Handler, error) {
	e, err := NewEngine(d)
	if err != nil {
		return nil, err
	}
	return compressed(e)
}

// NewEngine builds the gin engine with every route of the API, without the
// response compression New puts in front of it. Its Routes() are what the
// server serves (the fail-closed audit test derives its reads from them).
func NewEngine(d Deps) (*gin.Engine, error) {
	if d.Store == nil || d.Codec == nil || d.Verifier == nil || d.Log == nil || d.Location == nil {
		return nil, errors.New("handlers: store, codec, verifier, log and location are required")
	}
	u, err := url.Parse(d.BaseURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, errors.New("handlers: the base URL must be absolute")
	}
	basePath, err := BasePath(d.BaseURL)
	if err != nil {
		return nil, err
	}
	origins := map[string]bool{}
	for _, o := range d.CORSOrigins {
		n, err := CORSOrigin(o)
		if err != nil {
			return nil, fmt.Errorf("handlers: CORS origin: %w", err)
		}
		origins[n] = true
	}
	if len(d.SubjectKey) < 16 {
		return nil, errors.New("handlers: the security-log key must be at least 16 bytes: an unkeyed hash of an NHS number can be reversed")
	}
	if d.SecurityLog == nil {
		d.SecurityLog = d.Log
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.NewID == nil {
		d.NewID = registry.NewResourceID
	}
	if d.Limits == (Limits{}) {
		d.Limits = DefaultLimits()
	}
	if d.Limits.MaxHeaderBytes <= 0 {
		d.Limits.MaxHeaderBytes = DefaultLimits().MaxHeaderBytes
	}
	if d.RetentionDays <= 0 {
		d.RetentionDays = 365
	}
	if d.Quality == (quality.Thresholds{}) {
		d.Quality = quality.DefaultThresholds()
	}
	if d.Profiles == nil {
		if d.Profiles, err = profiles.Load(d.Location); err != nil {
			return nil, err
		}
	}
	cursors, err := newSealer(d.CursorKey)
	if err != nil {
		return nil, err
	}
	d.BaseURL = strings.TrimSuffix(d.BaseURL, "/")
	rc := registry.Config{Store: d.Store, Location: d.Location, RetentionDays: d.RetentionDays,
		Now: d.Now, NewID: d.NewID, Log: d.Log, SecurityLog: d.SecurityLog, SubjectKey: d.SubjectKey,
		ExportExpiry: d.ExportExpiry, Quality: d.Quality}
	if d.Notify != nil {
		rc.Notified = d.Notify.Nudge
	}
	reg, err := registry.New(rc)
	if err != nil {
		return nil, err
	}
	if _, ok := d.Store.(store.Subscriptions); ok && d.Notify == nil {
		if d.Notify, err = notify.New(notify.Config{Store: d.Store, Feed: reg, BaseURL: strings.TrimSuffix(d.BaseURL, "/"),
			Log: d.Log, Now: d.Now, NewID: d.NewID}); err != nil {
			return nil, err
		}
	}
	d.Store = nil // the registry's alone
	s := &Server{Deps: d, reg: reg, specs: map[string]*resourceSpec{}, started: d.Now().UTC().Format("2006-01-02"),
		basePath: basePath, corsOrigins: origins, cursors: cursors}
	for _, sp := range specs() {
		sp := sp
		s.specs[sp.Type] = &sp
	}
	s.capabilityDoc = s.capabilityStatement()
	s.pong = outcomeJSON([]fhir.Issue{{Severity: "information", Type: "informational", Diagnostics: "The access token is valid"}})
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.RemoveExtraSlash = true
	e.RedirectTrailingSlash = false // its answer is an HTML body; an unknown path gets an OperationOutcome
	e.UseRawPath = false
	e.ContextWithFallback = true
	s.routes(e)
	return e, nil
}

// BasePath is the path of a FHIR base URL, where the API is served: one or
// more segments of letters, digits and "-._~", such as /FHIR/R4 or
// /cpis/FHIR/R4. The root is refused: the API has a path of its own, apart
// from /healthz, /readyz and /metrics.
func BasePath(baseURL string) (string, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return "", fmt.Errorf("handlers: the base URL: %w", err)
	}
	p := strings.TrimSuffix(u.EscapedPath(), "/")
	if p == "" {
		return "", errors.New("the base URL needs a path, such as /FHIR/R4 or /cpis/FHIR/R4")
	}
	for _, seg := range strings.Split(p[1:], "/") {
		if seg == "" || seg == "." || seg == ".." || strings.Trim(seg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~") != "" {
			return "", fmt.Errorf("the base URL's path %q is not one this server can serve: use segments of letters, digits and -._~, such as /FHIR/R4", p)
		}
	}
	return p, nil
}

// now is the server's clock, in UTC.
func (s *Server) now() time.Time { return s.Now().UTC() }
