package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"

	"cpis/store"
)

// What the notification outbox reads and prunes beyond its own rows: the
// authority's feed without bodies (numbering needs only which accesses and
// in what order), and the removal of acknowledged events past retention.

// AuditFeedHeads is AuditFeed without bodies: the same walk of audit_owner
// (its key, owner and seq) from the same cursor, joined to the table for the
// id, subject and owners only, so no body is read or decompressed.
func (s *Store) AuditFeedHeads(ctx context.Context, owner string, since time.Time, cursor string, limit int) ([]store.AuditRecord, string, error) {
	after := int64(0)
	if cursor != "" {
		n, err := strconv.ParseInt(strings.TrimPrefix(cursor, "s"), 10, 64)
		if err != nil || !strings.HasPrefix(cursor, "s") || n < 0 {
			return nil, "", fmt.Errorf("store/sqlite: %w", store.ErrInvalidCursor)
		}
		after = n
	}
	if limit <= 0 {
		return nil, cursor, nil
	}
	// From the start of the feed, begin at the first record since the date
	// (as AuditFeed does). With a cursor, begin at the cursor: finding the
	// first record since the date walks every index entry since it (a
	// subscription's since is its start, so that walk grows with every
	// event numbered), and the page's own recorded >= since keeps the
	// answer the same.
	from := after
	if after == 0 {
		first, err := s.firstSince(ctx, owner, since)
		if err != nil {
			return nil, "", err
		}
		if first == 0 {
			return nil, cursor, nil
		}
		from = first - 1
	}
	rows, err := s.query(ctx, `SELECT a.seq, a.id, a.recorded, a.subject, a.notify, a.owners FROM audit_owner o JOIN audit a ON a.seq = o.seq
		WHERE o.owner = ? AND o.seq > ? AND o.recorded >= ? ORDER BY o.seq LIMIT `+strconv.Itoa(limit),
		owner, from, since.UnixNano())
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	var out []store.AuditRecord
	for rows.Next() {
		var a store.AuditRecord
		var recorded int64
		var owners string
		if err := rows.Scan(&a.Seq, &a.ID, &recorded, &a.Subject, &a.Notify, &owners); err != nil {
			return nil, "", unavailableCtx(ctx, err)
		}
		a.Recorded = time.Unix(0, recorded).UTC()
		a.Owners = strings.Fields(owners)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, "", unavailableCtx(ctx, err)
	}
	if len(out) == 0 {
		return nil, cursor, nil
	}
	return out, "s" + strconv.FormatInt(out[len(out)-1].Seq, 10), nil
}

// FirstSubEvent returns the lowest event number a subscription holds.
func (s *Store) FirstSubEvent(ctx context.Context, id string) (int64, error) {
	var first sql.NullInt64
	rows, err := s.query(ctx, `SELECT min(number) FROM sub_events WHERE sub = ?`, id)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	if rows.Next() {
		if err := rows.Scan(&first); err != nil {
			return 0, unavailableCtx(ctx, err)
		}
	}
	return first.Int64, unavailableErr(ctx, rows.Err())
}

// PruneSubEvents removes acknowledged events recorded before cutoff. For
// each subscription it finds where the run to remove stops (the first event
// recorded at or after cutoff, on the read pool; the walk in number order
// reads only the events it removes and one more), then deletes below it in
// slices of purgeBatch numbers, each its own write that checks the
// acknowledged number again, so a purge never takes an event the endpoint
// has not acknowledged, and audit writes commit between slices.
func (s *Store) PruneSubEvents(ctx context.Context, cutoff time.Time) (int, error) {
	subs, err := s.ListSubscriptions(ctx, "")
	if err != nil {
		return 0, err
	}
	total := 0
	for _, sub := range subs {
		first, err := s.FirstSubEvent(ctx, sub.ID)
		if err != nil {
			return total, err
		}
		if first == 0 || first > sub.Acked {
			continue
		}
		stop := sub.Acked + 1
		rows, err := s.query(ctx, `SELECT number FROM sub_events WHERE sub = ? AND number >= ? AND number <= ? AND recorded >= ? ORDER BY number LIMIT 1`,
			sub.ID, first, sub.Acked, cutoff.UnixNano())
		if err != nil {
			return total, err
		}
		if rows.Next() {
			if err := rows.Scan(&stop); err != nil {
				rows.Close()
				return total, unavailableCtx(ctx, err)
			}
		}
		err = unavailableErr(ctx, rows.Err())
		rows.Close()
		if err != nil {
			return total, err
		}
		for from := first; from < stop; from += purgeBatch {
			to := min(stop, from+purgeBatch)
			var n int64
			err := s.write(ctx, func(ctx context.Context, tx *writeTx) error {
				res, err := tx.exec(ctx, `DELETE FROM sub_events WHERE sub = ? AND number < ?
					AND number <= (SELECT acked FROM subscriptions WHERE id = ?)`, sub.ID, to, sub.ID)
				if err != nil {
					return unavailable(err)
				}
				n, err = res.RowsAffected()
				return unavailableErr(ctx, err)
			})
			total += int(n)
			if err != nil {
				return total, err
			}
		}
	}
	return total, nil
}
