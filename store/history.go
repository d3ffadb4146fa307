package store

import (
	"context"
	"time"
)

// Sort is the order of a search's results. Every order ends with the id, so
// it is total and keyset paging neither repeats nor skips a record that did
// not change while the pages were read.
type Sort int

const (
	// SortID orders by id (the default).
	SortID Sort = iota
	// SortUpdated orders by Updated, oldest first, then by id.
	SortUpdated
	// SortUpdatedDesc orders by Updated, newest first, then by id
	// descending.
	SortUpdatedDesc
	// SortStart orders by Start, earliest first, then by id; records with
	// no Start come last, by id.
	SortStart
	// SortStartDesc orders by Start, latest first, then by id descending;
	// records with no Start come last, by id descending.
	SortStartDesc
	// SortNone returns the matches in any order: for a read that expects
	// fewer matches than its Limit and orders them itself, so the store
	// need not sort the records, bodies and all. Not for paging: which
	// records a full page holds is not defined.
	SortNone
)

// HistoryQuery selects versions of the records of one type (the type-level
// _history): every version, tombstones included, newest first (Updated,
// then id, then version, all descending).
type HistoryQuery struct {
	Type string
	// Owner keeps only versions whose Owner is this ODS code (required: a
	// type's whole history is never read unscoped).
	Owner string
	// Since keeps versions updated at or after it; Before (if not zero)
	// versions updated before it (the FHIR _since and _at).
	Since, Before time.Time
	// After is the keyset position to continue after: the last version of
	// the previous page (zero Updated to start).
	After HistoryPosition
	// Limit caps the versions returned.
	Limit int
}

// HistoryPosition names one version in the type-level history's order.
type HistoryPosition struct {
	Updated time.Time
	ID      string
	Version int64
}

// Position is a record's place in the type-level history's order.
func (r Record) Position() HistoryPosition {
	return HistoryPosition{Updated: r.Updated, ID: r.ID, Version: r.Version}
}

// TypeHistorian is a store that can read the history of a whole type.
type TypeHistorian interface {
	// TypeHistory returns up to q.Limit versions matching q, newest first,
	// continuing after q.After. Versions are immutable once written, so a
	// page never repeats or skips a version written before the first page
	// was read; versions written since come first in the order and are not
	// on later pages (start again with Since to see them).
	TypeHistory(ctx context.Context, q HistoryQuery) ([]Record, error)
}
