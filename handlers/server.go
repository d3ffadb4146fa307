// Package handlers is the HTTP surface of the server: the gin routes of the
// FHIR API, one file per interaction group, and the one mapping from errors
// to OperationOutcome responses.
package handlers

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"cpis/auth"
	"cpis/fhir"
	"cpis/profiles"
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
}

// DefaultLimits are the limits the CapabilityStatement and README state.
func DefaultLimits() Limits {
	return Limits{MaxResourceBytes: 1 << 20, MaxBundleBytes: 32 << 20, MaxBundleEntries: 5000}
}

// Deps is everything the handlers need, built once by the caller.
type Deps struct {
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
	BaseURL string
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
}

// Metrics observes requests; the server's Prometheus collectors implement it.
type Metrics interface {
	Request(route, method string, status int, d time.Duration)
}

// Server holds the dependencies the handlers share.
type Server struct {
	Deps
	specs         map[string]*resourceSpec
	cursors       *sealer
	started       string // the CapabilityStatement date: when the server started
	capabilityDoc []byte
	pong          []byte
}

// New builds the gin engine with every route of the API.
func New(d Deps) (*gin.Engine, error) {
	if d.Store == nil || d.Codec == nil || d.Verifier == nil || d.Log == nil || d.Location == nil {
		return nil, errors.New("handlers: store, codec, verifier, log and location are required")
	}
	u, err := url.Parse(d.BaseURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, errors.New("handlers: the base URL must be absolute")
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
		d.NewID = newUUID
	}
	if d.Limits == (Limits{}) {
		d.Limits = DefaultLimits()
	}
	if d.RetentionDays <= 0 {
		d.RetentionDays = 365
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
	s := &Server{Deps: d, specs: map[string]*resourceSpec{}, cursors: cursors, started: d.Now().UTC().Format("2006-01-02")}
	for _, sp := range specs() {
		sp := sp
		s.specs[sp.Type] = &sp
	}
	s.capabilityDoc = s.capabilityStatement()
	s.pong = fhir.Outcome([]fhir.Issue{{Severity: "information", Type: "informational", Diagnostics: "The access token is valid"}}).JSON()
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

// now is the server's clock, in UTC.
func (s *Server) now() time.Time { return s.Now().UTC() }

// retainedSince is the oldest plan end date still served.
func (s *Server) retainedSince() time.Time {
	return s.now().AddDate(0, 0, -s.RetentionDays)
}
