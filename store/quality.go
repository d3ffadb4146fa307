package store

import (
	"context"
	"time"
)

// OwnerScanner is a store that can stream one owner's live records of a
// type with only what a pass over a whole authority needs: the data-quality
// report reads every plan of an authority (150,000 for the largest), and
// reading them through Search would hold pages of whole records, derived
// Flags included, and decode each again. Both backends implement it.
type OwnerScanner interface {
	// ScanOwner calls fn with each live (not deleted) record of type typ
	// managed by owner whose End is not before since (zero: no limit), in id
	// order. Each record has Type, ID, Version, Updated, Owner, Subject, End
	// and Body; no keys and no derived record. The record and its Body are
	// the store's to reuse once fn returns: fn copies what it keeps. An
	// error from fn stops the scan and is returned as it is.
	ScanOwner(ctx context.Context, typ, owner string, since time.Time, fn func(*Record) error) error
}
