// Package store is the persistence interface of the server: versioned
// resources with their history and search keys, derived resources kept in the
// same unit as their source, and the durable access audit. Backends live in
// store/sqlite (the embedded default) and store/mongo; store/storetest is the
// one suite both must pass.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Backends wrap them with context.
var (
	// ErrNotFound: no record with that type and id (or version).
	ErrNotFound = errors.New("store: not found")
	// ErrVersionConflict: a write's expected version did not match the
	// current one; nothing was written.
	ErrVersionConflict = errors.New("store: version conflict")
	// ErrUniqueConflict: a write would give a unique key to two live records;
	// nothing was written. The error is a *UniqueError.
	ErrUniqueConflict = errors.New("store: unique key conflict")
	// ErrUnavailable: the store cannot be reached or did not answer in time.
	ErrUnavailable = errors.New("store: unavailable")
	// ErrTransactionsUnsupported: the backend cannot apply several records
	// atomically (for example MongoDB without a replica set).
	ErrTransactionsUnsupported = errors.New("store: multi-record transactions are not supported by this database")
	// ErrInvalidCursor: a paging cursor was not issued by this store.
	ErrInvalidCursor = errors.New("store: invalid cursor")
)

// UniqueError names the key and the record that already holds it.
type UniqueError struct {
	Type, Key, HeldBy string
}

func (e *UniqueError) Error() string {
	return "store: unique key " + e.Type + " " + e.Key + " is held by " + e.Type + "/" + e.HeldBy
}

func (e *UniqueError) Unwrap() error { return ErrUniqueConflict }

// Record is one version of a resource.
type Record struct {
	Type    string
	ID      string
	Version int64 // 1 for the first version
	Updated time.Time
	Deleted bool   // a tombstone: the resource was deleted at this version
	Body    []byte // the resource JSON as served; nil for tombstones

	// Owner is the ODS code of the organisation that manages the record;
	// Subject the NHS number it is about ("" if none). Both are indexed
	// and are what permissions are checked against.
	Owner   string
	Subject string
	// End is when the record's period ended (zero if open). Records that
	// ended before a search's RetainedSince are not returned, and are purged.
	End time.Time
	// Start is when the record's period started (zero if it has none): the
	// sort key of _sort=date, normalised by StartOf from period.start (see
	// start.go). The server sets it from the body at write time; a store
	// recomputes it with PeriodStart only where it has no other source (a
	// database written before it was kept, a dump file).
	Start time.Time
	// Keys are search keys, system|value identifiers; they must be unique
	// among live records of the type. Reads do not return them.
	Keys []string

	// Ends is when the body changes by itself (a derived Flag turns
	// inactive when its plan's period is over); zero if never. The store
	// keeps it; what changes is the caller's to say.
	Ends time.Time

	// Derived is a resource derived from this one, stored in the same unit:
	// same id, version, time, owner, subject, end and start. It is read and searched
	// as a record of its own type.
	Derived *Derived
}

// Derived is the part of a derived record that differs from its source.
type Derived struct {
	Type string
	Body []byte
	Ends time.Time
}

// Write is one record to store. Expect is the version the current record
// must have for the write to apply (0: there is no record with that id).
// Record.Version must be Expect+1. A write of a tombstone (Deleted) removes
// the record's keys and its derived record's live state.
type Write struct {
	Record Record
	Expect int64
}

// Check reports a write that breaks the rules of Write: a type and id, a
// time, and the version following the expected one. Backends refuse such
// a write before touching anything.
func (w Write) Check() error {
	r := w.Record
	if r.Type == "" || r.ID == "" || r.Version != w.Expect+1 || r.Updated.IsZero() {
		return fmt.Errorf("store: malformed write of %s/%s version %d after %d", r.Type, r.ID, r.Version, w.Expect)
	}
	return nil
}

// Query selects live (not deleted) records of one type. Every non-empty field
// must match. Results are ordered by id unless Sort says otherwise.
type Query struct {
	Type    string
	IDs     []string // any of
	Subject string   // NHS number
	// Subjects, if any, is a set of NHS numbers the record's must be one
	// of (with Subject too, if given): one read of many children's
	// records, such as an upload's duplicate check.
	Subjects []string
	Owner    string // ODS code of the managing organisation
	Key      string // one identifier key, system|value
	// OwnKey is an identifier (system|value) the caller cannot scope to an
	// owner: it matches a record holding the key Owner+"|"+OwnKey, its own
	// managing organisation's. (The server writes identifier keys scoped by
	// the managing organisation, whose ODS code holds no '|'.) Like Key it
	// matches primary records only.
	OwnKey string
	// RetainedSince excludes records whose End is before it (zero: no limit).
	RetainedSince time.Time
	// After is the id to continue after (keyset paging); with a sort by
	// Updated, the position is (AfterUpdated, After).
	After string
	// UpdatedFrom and UpdatedTo bound the current version's Updated: from
	// inclusive, to exclusive (zero: no bound). The _lastUpdated search.
	UpdatedFrom, UpdatedTo time.Time
	// Sort orders the results: by id (the zero value), or by Updated then
	// id, ascending or descending. AfterUpdated is the Updated of the
	// record After names when paging a sort by Updated.
	Sort         Sort
	AfterUpdated time.Time
	// AfterStart is the Start of the record After names when paging a sort
	// by Start (zero: that record has no start, so the page continues among
	// the records with none, which come last).
	AfterStart time.Time
	// Limit caps the records returned (0 returns none; use Count for totals).
	Limit int
	// Count asks for the total number of matches as well.
	Count bool
}

// AuditRecord is one access to a patient's records. ID is assigned by the
// caller, Seq by the store (its position in the feed).
type AuditRecord struct {
	// Seq is the record's position in the store, set on records read (0 on
	// records written): what AuditBodies fetches a record by.
	Seq      int64
	ID       string
	Recorded time.Time
	Subject  string   // the NHS number accessed
	Owners   []string // ODS codes of the local authorities whose records were touched
	Agent    string   // who accessed (user id), for the access-history de-duplication
	Notify   bool     // shown in access history and LA feeds (health users' accesses)
	Body     []byte   // the AuditEvent JSON as served to health users
	// Views holds, by ODS code, the AuditEvent a local authority is served
	// where it differs from Body: the access also showed other authorities'
	// plans, and each sees only its own part. Nil for most accesses.
	Views map[string][]byte
}

// Store is the persistence interface both backends implement.
type Store interface {
	// Commit applies all writes atomically: all or none. With more than one
	// write a backend without transactions returns ErrTransactionsUnsupported.
	Commit(ctx context.Context, writes []Write) error
	// Get returns the current version of a record, tombstones included.
	Get(ctx context.Context, typ, id string) (Record, error)
	// GetVersion returns one version of a record.
	GetVersion(ctx context.Context, typ, id string, version int64) (Record, error)
	// History returns every version of a record, newest first.
	History(ctx context.Context, typ, id string) ([]Record, error)
	// Search returns live records matching q, and their total if q.Count.
	Search(ctx context.Context, q Query) ([]Record, int, error)
	// Holders returns, by key, the live record of type typ (a primary
	// type: keys belong to primary records) that holds each of keys, the
	// identifier keys Query.Key takes; a key no live record holds is
	// absent. Each record is read with the key it holds, in one statement
	// or document: an upload's conditional writes resolved in one read
	// instead of one search each.
	Holders(ctx context.Context, typ string, keys []string) (map[string]Record, error)

	// Audit stores access records durably before it returns.
	Audit(ctx context.Context, recs []AuditRecord) error
	// AuditBySubject returns the most recent limit Notify access records
	// about an NHS number recorded at or after since, oldest first.
	AuditBySubject(ctx context.Context, subject string, since time.Time, limit int) ([]AuditRecord, error)
	// AuditHeadsBySubject is AuditBySubject without the bodies: Body and
	// Views are nil, Seq is set. A caller that serves a few of many records
	// (the access history shows 25 of up to 2,000) reads them this way and
	// then the bodies of the ones it keeps with AuditBodies; SQLite answers
	// it from an index alone.
	AuditHeadsBySubject(ctx context.Context, subject string, since time.Time, limit int) ([]AuditRecord, error)
	// AuditBodies returns the access records with these sequence numbers
	// (Seq), bodies and views included, in the order given. A number not
	// stored (the record was purged meanwhile) is left out.
	AuditBodies(ctx context.Context, seqs []int64) ([]AuditRecord, error)
	// AuditFeed returns up to limit Notify access records that touched
	// owner's records, recorded at or after since, oldest first, continuing
	// after cursor ("" to start). It returns the cursor to continue from;
	// a page never skips or repeats a record, even while records are added.
	AuditFeed(ctx context.Context, owner string, since time.Time, cursor string, limit int) ([]AuditRecord, string, error)
	// AuditFeedTotal counts the records AuditFeed serves owner from since
	// (from its start, whatever the cursor).
	AuditFeedTotal(ctx context.Context, owner string, since time.Time) (int, error)

	// Purge removes records (with their history and derived records) whose
	// End is before cutoff, and access records recorded before cutoff about
	// subjects with no remaining record. It is safe to run from several
	// processes at once.
	Purge(ctx context.Context, cutoff time.Time) (PurgeStats, error)

	// Ping checks the store can be reached.
	Ping(ctx context.Context) error
	Close() error
}

// PurgeStats counts what a purge removed.
type PurgeStats struct {
	Records int
	Audit   int
}
