package store

import "context"

// Item is one unit of a whole-store dump (cpis export, import, migrate).
//
// A dump is every record, then every access record in feed order, then one
// last item holding neither: the sequence mark.
type Item struct {
	// Versions is one record: every version, oldest first, each with its
	// derived record. Keys are those of the current (last) version; stores
	// keep no keys for earlier versions.
	Versions []Record
	// Audit is one access record; Seq is its position in the feed (the
	// number a feed cursor names).
	Audit *AuditRecord
	// Seq is the access record's sequence number; on the last item, the
	// highest sequence number the store has handed out (purged records
	// included), so a target never hands one out again.
	Seq int64
}

// Dumper is a store that can stream its whole content. The store's identity
// (store.MarkerFile, the identity record inside the database) and its
// housekeeping (readiness heartbeat, feed fence markers) are not content.
type Dumper interface {
	// Dump calls fn for every item, in dump order, from one consistent
	// snapshot where the backend has one. An error from fn stops the dump.
	Dump(ctx context.Context, fn func(Item) error) error
}

// Loader is a store that can load a dump.
type Loader interface {
	// Empty reports whether the store holds no record and no access record.
	Empty(ctx context.Context) (bool, error)
	// Load stores the items next returns until it returns io.EOF, keeping
	// versions, times and feed sequence numbers as they are. It does not
	// check versions against what the store holds: load into an empty store.
	Load(ctx context.Context, next func() (Item, error)) error
}
