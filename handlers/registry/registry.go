// Package registry is the application layer of the server: the CP-IS
// use-cases over a store.Store, taking a context and the caller, never gin.
// It builds records from incoming resources and writes them (one write path
// for single writes and Bundle entries), applies visibility and retention,
// resolves includes, and audits: records about a patient leave it only after
// their AuditEvent is durable (or the read is silent and permitted).
package registry

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"cpis/auth"
	"cpis/fhir"
	"cpis/profiles"
	"cpis/profiles/quality"
	"cpis/store"
)

// Config is what the registry needs, built once by the caller.
type Config struct {
	Store store.Store
	// Location is where plan dates are read (Europe/London).
	Location *time.Location
	// RetentionDays is how long after a plan ends it is still served.
	RetentionDays int
	Now           func() time.Time
	// NewID makes ids for created resources and audit events.
	NewID func() string
	// Log receives errors that name only records (an index mismatch).
	Log *slog.Logger
	// SecurityLog receives silent reads; it never carries an NHS number (a
	// keyed hash instead) or a name.
	SecurityLog *slog.Logger
	// SubjectKey keys the hash of NHS numbers in the security log.
	SubjectKey []byte
	// Notified, if set, is called after accesses that notify a local
	// authority are durable (the push delivery's wake-up). It must not
	// block: it runs on the read's path.
	Notified func()
	// ExportExpiry is how long a bulk export's files are kept (1h if zero);
	// ExportLease how long a running export may go without a heartbeat
	// before a poll reports it lost (1 minute if zero).
	ExportExpiry, ExportLease time.Duration
	// Quality is the data-quality thresholds of the warnings a plan's
	// write answers with; the defaults when zero.
	Quality quality.Thresholds
}

// Registry is the CP-IS use-cases over one store.
type Registry struct {
	st            store.Store
	loc           *time.Location
	retentionDays int
	clock         func() time.Time
	newID         func() string
	log           *slog.Logger
	security      *slog.Logger
	subjectKey    []byte
	macs          sync.Pool // keyed HMACs of subjectKey (subjectHash)
	notified      func()
	exportExpiry  time.Duration
	exportLease   time.Duration
	exports       *exportRuns
	quality       quality.Thresholds
	verified      *verifiedBodies // plan bodies that passed checkSubjects
	verifiedAudit *verifiedBodies // AuditEvents that passed checkAuditSubjects
}

// New checks the configuration and builds the registry.
func New(c Config) (*Registry, error) {
	if c.Store == nil || c.Location == nil {
		return nil, errors.New("registry: a store and a location are required")
	}
	if len(c.SubjectKey) < 16 {
		return nil, errors.New("registry: the security-log key must be at least 16 bytes: an unkeyed hash of an NHS number can be reversed")
	}
	if c.Log == nil || c.SecurityLog == nil {
		return nil, errors.New("registry: a log and a security log are required")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.NewID == nil {
		c.NewID = NewResourceID
	}
	if c.RetentionDays <= 0 {
		c.RetentionDays = 365
	}
	if c.Quality == (quality.Thresholds{}) {
		c.Quality = quality.DefaultThresholds()
	}
	if c.ExportExpiry <= 0 {
		c.ExportExpiry = time.Hour
	}
	if c.ExportLease <= 0 {
		c.ExportLease = time.Minute
	}
	return &Registry{st: c.Store, loc: c.Location, retentionDays: c.RetentionDays, clock: c.Now,
		newID: c.NewID, log: c.Log, security: c.SecurityLog, subjectKey: c.SubjectKey, notified: c.Notified,
		exportExpiry: c.ExportExpiry, exportLease: c.ExportLease, exports: newExportRuns(), quality: c.Quality,
		verified: newVerifiedBodies(), verifiedAudit: newVerifiedBodies()}, nil
}

// Caller is who asks and how: everything the permission checks, the audit
// and the security log need, so the registry never sees the request.
type Caller struct {
	P *auth.Principal
	// Silent is a scheduled-care read: no AuditEvent, a security-log line.
	Silent bool
	// RequestID names the request in the logs and in 5xx answers.
	RequestID string
	// Route is the route template (never the path's values).
	Route string
	// TraceID is the client's TraceID header, recorded in the AuditEvent.
	TraceID string
}

// Now is the registry's clock, in UTC.
func (r *Registry) Now() time.Time { return r.clock().UTC() }

// RetainedSince is the retention cutoff, computed here only: the oldest plan
// end date still served. Records that ended before it are treated as gone
// and purged; access records before it are not served once the patient has
// no retained plan.
func (r *Registry) RetainedSince() time.Time {
	return profiles.RetainedSince(r.Now(), r.retentionDays)
}

// Ping checks the store can be reached.
func (r *Registry) Ping(ctx context.Context) error { return r.st.Ping(ctx) }

// NewResourceID is the default id of a created resource or an access
// record: a version 7 UUID, 74 random bits after the creation time in
// milliseconds. Ids made one after another sort one after another, so a
// store's id indexes grow at their end, a few pages per 1,000-entry upload,
// where version 4 ids land on a random page each (at 150,000 children a
// 1,000-entry transaction then touched thousands of index pages). The time
// it carries is the meta.lastUpdated the resource shows anyway.
func NewResourceID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}

// NewID makes an id for a created resource.
func (r *Registry) NewID() string { return r.newID() }

// storeErr turns a store error into the error a client sees: the sentinel
// errors become kinds; the cause is kept for the log.
func storeErr(c Caller, err error) error {
	var ue *store.UniqueError
	switch {
	case err == nil:
		return nil
	case fhir.As(err) != nil:
		return err
	case errors.Is(err, store.ErrNotFound):
		return fhir.Wrap(fhir.KindNotFound, err, "Resource not found")
	case errors.As(err, &ue):
		return fhir.Wrap(fhir.KindPreconditionFailed, err, "The identifier %s already identifies another %s", keyToken(ue.Key), ue.Type)
	case errors.Is(err, store.ErrVersionConflict):
		// A write that kept losing races to others. 412 is only for a
		// version the client pinned with If-Match (the writes say so).
		return fhir.Wrap(fhir.KindConflict, err, "The resource was changed by other requests at the same time; send the request again")
	case errors.Is(err, store.ErrInvalidCursor):
		return fhir.Wrap(fhir.KindInvalidSearch, err, "The paging cursor is not valid; start the search again")
	case errors.Is(err, store.ErrTransactionsUnsupported):
		return fhir.Wrap(fhir.KindNotImplemented, err, "This server's database cannot apply several resources atomically, so transaction Bundles are refused; send a batch Bundle instead")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// The client went away, or the request ran out of time: the
		// handlers' one table tells them apart by the request's context.
		return err
	case errors.Is(err, store.ErrUnavailable):
		return fhir.Wrap(fhir.KindUnavailable, err, "The service is unavailable; try again shortly (request %s)", c.RequestID)
	}
	// Context errors and bugs: the handlers' one table maps them.
	return err
}

// StoreFault reports whether a store call's error is a failure of the store,
// for the metrics: not an answer such as not-found or a version conflict,
// nor a call stopped because its client went away.
func StoreFault(err error) bool {
	switch {
	case err == nil,
		errors.Is(err, context.Canceled),
		errors.Is(err, store.ErrNotFound),
		errors.Is(err, store.ErrVersionConflict),
		errors.Is(err, store.ErrUniqueConflict),
		errors.Is(err, store.ErrInvalidCursor),
		errors.Is(err, store.ErrTransactionsUnsupported):
		return false
	}
	return true
}
