package store

import (
	"context"
	"time"
)

// DeletedLister is a store that can list an owner's recently deleted
// records with what they held before they were deleted: the data-quality
// report needs a deleted plan's NHS number and identifiers to tell an
// NHS-number correction (a plan deleted as recorded in error, and a live
// one in its place for another child). Both backends implement it.
type DeletedLister interface {
	// Deleted returns owner's records of type typ whose current version is
	// a tombstone written at or after since, in id order, continuing after
	// the id after ("" to start), at most limit. Each is the tombstone
	// (Deleted set, Version and Updated those of the deletion, Owner and
	// Subject) with Body holding the body of the version it deleted, the
	// last live one. Keys and derived records are not returned.
	Deleted(ctx context.Context, typ, owner string, since time.Time, after string, limit int) ([]Record, error)
}
