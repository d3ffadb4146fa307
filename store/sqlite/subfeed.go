package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
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

// FirstSubEvent returns the lowest event number a subscription holds: the
// first of its first page.
func (s *Store) FirstSubEvent(ctx context.Context, id string) (int64, error) {
	var first int64
	rows, err := s.query(ctx, `SELECT first FROM sub_pages WHERE sub = ? ORDER BY last LIMIT 1`, id)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	if rows.Next() {
		if err := rows.Scan(&first); err != nil {
			return 0, unavailableCtx(ctx, err)
		}
	}
	return first, unavailableErr(ctx, rows.Err())
}

// PruneSubEvents removes acknowledged events recorded before cutoff. For
// each subscription it finds where the run to remove stops (the first event
// recorded at or after cutoff, on the read pool; the walk in number order
// reads only the pages it removes and one more), then removes the pages
// below it in slices of about purgeBatch events, and the stop's own page's
// events before it, each its own write that checks the acknowledged number
// again, so a purge never takes an event the endpoint has not acknowledged,
// and audit writes commit between slices.
func (s *Store) PruneSubEvents(ctx context.Context, cutoff time.Time) (int, error) {
	subs, err := s.ListSubscriptions(ctx, "")
	if err != nil {
		return 0, err
	}
	total := 0
	for _, sub := range subs {
		n, err := s.pruneSub(ctx, sub, cutoff)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// subPage is one page's run of numbers.
type subPage struct{ first, last int64 }

func (s *Store) pruneSub(ctx context.Context, sub store.Subscription, cutoff time.Time) (int, error) {
	stop, pages, err := s.pruneStop(ctx, sub.ID, sub.Acked, cutoff)
	if err != nil || len(pages) == 0 {
		return 0, err
	}
	total := 0
	// Whole pages below stop, a slice at a time.
	for i := 0; i < len(pages) && pages[i].last < stop; {
		j, n := i, int64(0)
		for j < len(pages) && pages[j].last < stop && n < purgeBatch {
			n += pages[j].last - pages[j].first + 1
			j++
		}
		upto := pages[j-1].last
		var removed int64
		err := s.write(ctx, func(ctx context.Context, tx *writeTx) error {
			const pages = ` FROM sub_pages WHERE sub = ? AND last <= ? AND last <= (SELECT acked FROM subscriptions WHERE id = ?)`
			if err := tx.queryRow(ctx, `SELECT coalesce(sum(last - first + 1), 0)`+pages, sub.ID, upto, sub.ID).Scan(&removed); err != nil {
				return unavailable(err)
			}
			_, err := tx.exec(ctx, `DELETE`+pages, sub.ID, upto, sub.ID)
			return unavailableErr(ctx, err)
		})
		if err != nil {
			return total, err
		}
		total += int(removed)
		i = j
	}
	// The page holding stop loses the events before it.
	p := pages[len(pages)-1]
	if p.first >= stop || p.last < stop {
		return total, nil
	}
	var removed int64
	err = s.write(ctx, func(ctx context.Context, tx *writeTx) error {
		var blob []byte
		err := tx.queryRow(ctx, `SELECT p.events FROM sub_pages p JOIN subscriptions s ON s.id = p.sub
			WHERE p.sub = ? AND p.last = ? AND p.first = ? AND s.acked >= ?`, sub.ID, p.last, p.first, stop-1).Scan(&blob)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // changed meanwhile: the next sweep looks again
		}
		if err != nil {
			return unavailable(err)
		}
		kept, err := unpackSubEvents(nil, blob, p.first, p.last, stop)
		if err != nil {
			return err
		}
		if blob, err = packSubEvents(kept); err != nil {
			return err
		}
		if _, err := tx.exec(ctx, `UPDATE sub_pages SET first = ?, events = ? WHERE sub = ? AND last = ?`, stop, blob, sub.ID, p.last); err != nil {
			return unavailable(err)
		}
		removed = stop - p.first
		return nil
	})
	return total + int(removed), err
}

// pruneStop walks a subscription's pages from its first and returns the
// number the run to remove stops at (the first event not yet acknowledged or
// recorded at or after cutoff) and the pages up to the one holding it.
func (s *Store) pruneStop(ctx context.Context, id string, acked int64, cutoff time.Time) (int64, []subPage, error) {
	rows, err := s.query(ctx, `SELECT first, last, events FROM sub_pages WHERE sub = ? AND first <= ? ORDER BY last`, id, acked)
	if err != nil {
		return 0, nil, err
	}
	defer rows.Close()
	stop := acked + 1
	var pages []subPage
	var evs []store.SubEvent
	for rows.Next() {
		var p subPage
		var blob []byte
		if err := rows.Scan(&p.first, &p.last, &blob); err != nil {
			return 0, nil, unavailableCtx(ctx, err)
		}
		pages = append(pages, p)
		if evs, err = unpackSubEvents(evs[:0], blob, p.first, p.last, p.first); err != nil {
			return 0, nil, err
		}
		if i := slices.IndexFunc(evs, func(e store.SubEvent) bool { return e.Number > acked || !e.Recorded.Before(cutoff) }); i >= 0 {
			stop = evs[i].Number
			break
		}
	}
	return stop, pages, unavailableErr(ctx, rows.Err())
}
