package sqlite

import (
	"context"
	"database/sql"
	"math"
	"strconv"
	"time"

	"cpis/store"
)

// scanChunk is how many records one query of ScanOwner reads: the scan is
// a run of short reads, keyset-paged by id, so no read holds its snapshot
// (and the log: see boundWAL) for a whole authority.
const scanChunk = 4096

// scanOwnerSQL reads an owner's live records through resources_owner
// (owner, id), in id order; +type keeps SQLite off the (type, id) index,
// which would walk every authority's records. Only the columns a record
// without keys or derived record needs are read: not the derived Flag's body.
var scanOwnerSQL = `SELECT id, version, updated, subject, plan_end, body FROM resources
	WHERE owner = ? AND +type = ? AND deleted = 0 AND (plan_end IS NULL OR plan_end >= ?) AND id > ?
	ORDER BY id LIMIT ` + strconv.Itoa(scanChunk)

// ScanOwner implements store.OwnerScanner.
func (s *Store) ScanOwner(ctx context.Context, typ, owner string, since time.Time, fn func(*store.Record) error) error {
	from := int64(math.MinInt64)
	if !since.IsZero() {
		from = since.UnixNano()
	}
	rec := store.Record{Type: typ, Owner: owner}
	after := ""
	for {
		n, err := s.scanChunk(ctx, &rec, from, after, fn)
		if err != nil {
			return err
		}
		if n < scanChunk {
			return nil
		}
		after = rec.ID
	}
}

// scanChunk reads one chunk of ScanOwner after the id after, calling fn
// with rec filled in for each; it returns how many it read. rec holds the
// last one's id after it.
func (s *Store) scanChunk(ctx context.Context, rec *store.Record, from int64, after string, fn func(*store.Record) error) (int, error) {
	rows, err := s.query(ctx, scanOwnerSQL, rec.Owner, rec.Type, from, after)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	var updated int64
	var end sql.NullInt64
	var body sql.RawBytes
	for rows.Next() {
		if err := rows.Scan(&rec.ID, &rec.Version, &updated, &rec.Subject, &end, &body); err != nil {
			return n, unavailableCtx(ctx, err)
		}
		n++
		rec.Updated = fromNanos(sql.NullInt64{Int64: updated, Valid: true})
		rec.End = fromNanos(end)
		rec.Body = body
		if err := fn(rec); err != nil {
			return n, err
		}
	}
	if err := rows.Err(); err != nil {
		return n, unavailableCtx(ctx, err)
	}
	return n, nil
}
