package sqlite

import (
	"context"
	"database/sql"
	"sync"
	"time"
)

// The feed's marks. Every page of an authority's feed answers with the
// feed's total (the records since the date) and starts its walk at the
// first record since the date: both read every entry of audit_owner_recorded
// since the date, which at national volume is ten thousand or more for a
// week of one large authority, on every page.
//
// A mark remembers both for an (owner, since) pair as of a sequence number,
// upto: the owner's largest sequence number when it was counted. Sequence
// numbers are given inside the single write lock, so every feed row
// committed after a count has a larger number than any it counted: the next
// read adds the rows after upto (a seek on audit_owner's key and a few
// entries) instead of counting again. Rows disappear only through the
// retention sweep, and a dump's load writes rows with numbers of its own:
// both count themselves in meta's feed_changes in the transaction that does
// so (in any process), and each read reads that count in the same statement
// (one snapshot) as the new rows, so a mark taken before is never used
// after: it is counted afresh.
//
// What a mark answers is what the count and the walk would: the same
// number, the same first record.

// feedMarksMax bounds the marks kept; past it one is dropped for each new
// one.
const feedMarksMax = 1024

type feedKey struct {
	owner string
	since int64
}

type feedMark struct {
	changes int64 // meta's feed_changes when counted
	upto    int64 // the owner's largest sequence number then, 0 if none
	count   int   // owner's feed rows recorded at or after since, up to upto
	first   int64 // the smallest sequence number among them, 0 if none
}

type feedMarks struct {
	mu sync.Mutex
	m  map[feedKey]feedMark
}

func (f *feedMarks) get(k feedKey) (feedMark, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.m[k]
	return m, ok
}

func (f *feedMarks) put(k feedKey, m feedMark) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[feedKey]feedMark{}
	}
	if _, ok := f.m[k]; !ok && len(f.m) >= feedMarksMax {
		for old := range f.m {
			delete(f.m, old)
			break
		}
	}
	f.m[k] = m
}

// sqlFeedChanged counts, in the transaction that does it, a change to the
// feed rows other than new rows with new sequence numbers.
const sqlFeedChanged = `INSERT INTO meta(key, value) VALUES ('feed_changes', '1')
	ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1`

const feedChanges = `coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'feed_changes'), 0)`

// feedMarkOf returns owner's feed from since as it stands now: its count
// and its first sequence number.
func (s *Store) feedMarkOf(ctx context.Context, owner string, since time.Time) (feedMark, error) {
	k := feedKey{owner, since.UnixNano()}
	if old, ok := s.feed.get(k); ok {
		// The rows after the mark, and whether anything else changed, in
		// one statement: one snapshot.
		var changes int64
		var n int
		var first, last sql.NullInt64
		err := s.scanRow(ctx, []any{&changes, &n, &first, &last}, `SELECT `+feedChanges+`,
			count(*) FILTER (WHERE recorded >= ?2), min(seq) FILTER (WHERE recorded >= ?2), max(seq)
			FROM audit_owner WHERE owner = ?1 AND seq > ?3`, owner, k.since, old.upto)
		if err != nil {
			return feedMark{}, err
		}
		if changes == old.changes {
			m := old
			m.count += n
			if m.first == 0 {
				m.first = first.Int64
			}
			if last.Valid {
				m.upto = last.Int64
			}
			if m != old {
				s.feed.put(k, m)
			}
			return m, nil
		}
	}
	var m feedMark
	var first, upto sql.NullInt64
	err := s.scanRow(ctx, []any{&m.changes, &m.count, &first, &upto}, `SELECT `+feedChanges+`,
		count(*), min(seq), (SELECT max(seq) FROM audit_owner WHERE owner = ?1)
		FROM audit_owner INDEXED BY audit_owner_recorded WHERE owner = ?1 AND recorded >= ?2`, owner, k.since)
	if err != nil {
		return feedMark{}, err
	}
	m.first, m.upto = first.Int64, upto.Int64
	s.feed.put(k, m)
	return m, nil
}

// scanRow reads the one row q answers into dest.
func (s *Store) scanRow(ctx context.Context, dest []any, q string, args ...any) error {
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	if rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return unavailableCtx(ctx, err)
		}
	}
	return unavailableErr(ctx, rows.Err())
}
