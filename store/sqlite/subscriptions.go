package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"cpis/store"
)

// Subscriptions: one row per subscription holding the resource and its
// outbox state, and its numbered events in pages (sub_pages, subpage.go).
// Every write is one transaction of the writer, so a conditional write (on
// the version, the lease or the cursor) is read and applied atomically.

var _ store.Subscriptions = (*Store)(nil)

const subCols = `id, owner, version, updated, start, status, cursor, events, acked, failures,
	failing_since, next_attempt, last_sent, error, holder, epoch, lease_until, body`

func scanSub(rows *sql.Rows) (store.Subscription, error) {
	var s store.Subscription
	var updated, start int64
	var failing, next, sent, until sql.NullInt64
	err := rows.Scan(&s.ID, &s.Owner, &s.Version, &updated, &start, &s.Status, &s.Cursor, &s.Events, &s.Acked,
		&s.Failures, &failing, &next, &sent, &s.Error, &s.Holder, &s.Epoch, &until, &s.Body)
	s.Updated, s.Start = time.Unix(0, updated).UTC(), time.Unix(0, start).UTC()
	s.FailingSince, s.NextAttempt, s.LastSent, s.LeaseUntil = fromNanos(failing), fromNanos(next), fromNanos(sent), fromNanos(until)
	return s, err
}

func (s *Store) subs(ctx context.Context, q string, args ...any) ([]store.Subscription, error) {
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Subscription
	for rows.Next() {
		sub, err := scanSub(rows)
		if err != nil {
			return nil, unavailableCtx(ctx, err)
		}
		out = append(out, sub)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailableCtx(ctx, err)
	}
	return out, nil
}

// GetSubscription returns one subscription.
func (s *Store) GetSubscription(ctx context.Context, id string) (store.Subscription, error) {
	out, err := s.subs(ctx, `SELECT `+subCols+` FROM subscriptions WHERE id = ?`, id)
	if err != nil {
		return store.Subscription{}, err
	}
	if len(out) == 0 {
		return store.Subscription{}, fmt.Errorf("store/sqlite: Subscription/%s: %w", id, store.ErrNotFound)
	}
	return out[0], nil
}

// ListSubscriptions returns owner's subscriptions, or everyone's.
func (s *Store) ListSubscriptions(ctx context.Context, owner string) ([]store.Subscription, error) {
	if owner == "" {
		return s.subs(ctx, `SELECT `+subCols+` FROM subscriptions ORDER BY id`)
	}
	return s.subs(ctx, `SELECT `+subCols+` FROM subscriptions WHERE owner = ? ORDER BY id`, owner)
}

// PutSubscription creates or updates the resource fields of a subscription.
func (s *Store) PutSubscription(ctx context.Context, sub store.Subscription, expect int64) error {
	return s.write(ctx, func(ctx context.Context, tx *writeTx) error {
		if expect == 0 {
			_, err := tx.exec(ctx, `INSERT INTO subscriptions(id, owner, version, updated, start, status, body) VALUES (?, ?, ?, ?, ?, ?, ?)`,
				sub.ID, sub.Owner, sub.Version, sub.Updated.UnixNano(), sub.Start.UnixNano(), sub.Status, sub.Body)
			if isConstraint(err) {
				return fmt.Errorf("store/sqlite: Subscription/%s exists: %w", sub.ID, store.ErrVersionConflict)
			}
			if err != nil {
				return unavailable(err)
			}
			return nil
		}
		res, err := tx.exec(ctx, `UPDATE subscriptions SET version = ?, updated = ?, status = ?, body = ? WHERE id = ? AND version = ?`,
			sub.Version, sub.Updated.UnixNano(), sub.Status, sub.Body, sub.ID, expect)
		return s.changed(ctx, tx, res, err, sub.ID)
	})
}

// changed turns an update that matched no row into ErrNotFound or
// ErrVersionConflict.
func (s *Store) changed(ctx context.Context, tx *writeTx, res sql.Result, err error, id string) error {
	if err != nil {
		return unavailable(err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return unavailable(err)
	} else if n == 1 {
		return nil
	}
	var one int
	if err := tx.queryRow(ctx, `SELECT 1 FROM subscriptions WHERE id = ?`, id).Scan(&one); err == sql.ErrNoRows {
		return fmt.Errorf("store/sqlite: Subscription/%s: %w", id, store.ErrNotFound)
	} else if err != nil {
		return unavailable(err)
	}
	return fmt.Errorf("store/sqlite: Subscription/%s changed: %w", id, store.ErrVersionConflict)
}

// DeleteSubscription removes a subscription and its events.
func (s *Store) DeleteSubscription(ctx context.Context, id string) error {
	return s.write(ctx, func(ctx context.Context, tx *writeTx) error {
		res, err := tx.exec(ctx, `DELETE FROM subscriptions WHERE id = ?`, id)
		if err != nil {
			return unavailable(err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("store/sqlite: Subscription/%s: %w", id, store.ErrNotFound)
		}
		if _, err := tx.exec(ctx, `DELETE FROM sub_pages WHERE sub = ?`, id); err != nil {
			return unavailable(err)
		}
		return nil
	})
}

// ClaimSubscription renews or takes over the delivery lease.
func (s *Store) ClaimSubscription(ctx context.Context, id, holder string, now time.Time, ttl time.Duration) (store.Subscription, bool, error) {
	var held bool
	err := s.write(ctx, func(ctx context.Context, tx *writeTx) error {
		res, err := tx.exec(ctx, `UPDATE subscriptions SET
				epoch = CASE WHEN holder = ? AND lease_until >= ? THEN epoch ELSE epoch + 1 END,
				holder = ?, lease_until = ?
			WHERE id = ? AND (holder = ? OR holder = '' OR lease_until IS NULL OR lease_until < ?)`,
			holder, now.UnixNano(), holder, now.Add(ttl).UnixNano(), id, holder, now.UnixNano())
		if err != nil {
			return unavailable(err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return unavailable(err)
		}
		held = n == 1
		return nil
	})
	if err != nil {
		return store.Subscription{}, false, err
	}
	sub, err := s.GetSubscription(ctx, id)
	if err != nil {
		return store.Subscription{}, false, err
	}
	return sub, held && sub.Holder == holder, nil
}

// AppendSubEvents numbers one feed page's accesses.
func (s *Store) AppendSubEvents(ctx context.Context, id, holder string, epoch int64, from, to string, evs []store.SubEvent) error {
	var page []byte
	var first, last int64
	if len(evs) > 0 {
		var err error
		if page, err = packSubEvents(evs); err != nil {
			return err
		}
		first, last = evs[0].Number, evs[len(evs)-1].Number
	}
	return s.write(ctx, func(ctx context.Context, tx *writeTx) error {
		res, err := tx.exec(ctx, sqlSubCursor, to, last, last, id, holder, epoch, from, last, first)
		if err := s.changed(ctx, tx, res, err, id); err != nil {
			return err
		}
		if page == nil {
			return nil
		}
		if _, err := tx.exec(ctx, sqlSubPage, id, last, first, page); err != nil {
			return unavailable(err)
		}
		return nil
	})
}

// The outbox's writes, prepared with the writer's statements. The cursor's
// update also checks that the page's numbers follow the subscription's last
// (a page never overlaps or leaves a gap before another).
const (
	sqlSubCursor = `UPDATE subscriptions SET cursor = ?, events = CASE WHEN ? > 0 THEN ? ELSE events END
			WHERE id = ? AND holder = ? AND epoch = ? AND cursor = ? AND (? = 0 OR events = ? - 1)`
	sqlSubPage = `INSERT INTO sub_pages(sub, last, first, events) VALUES (?, ?, ?, ?)`
)

// SetSubDelivery records a delivery attempt's outcome.
func (s *Store) SetSubDelivery(ctx context.Context, id, holder string, epoch, version int64, d store.Delivery) error {
	return s.write(ctx, func(ctx context.Context, tx *writeTx) error {
		res, err := tx.exec(ctx, `UPDATE subscriptions SET status = ?, acked = ?, failures = ?, failing_since = ?,
				next_attempt = ?, last_sent = ?, error = ?
			WHERE id = ? AND holder = ? AND epoch = ? AND version = ?`,
			d.Status, d.Acked, d.Failures, nanos(d.FailingSince), nanos(d.NextAttempt), nanos(d.LastSent), d.Error,
			id, holder, epoch, version)
		return s.changed(ctx, tx, res, err, id)
	})
}

// SubEvents returns numbered events after a number: the pages from the one
// holding after+1, unpacked.
func (s *Store) SubEvents(ctx context.Context, id string, after int64, limit int) ([]store.SubEvent, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.query(ctx, `SELECT p.first, p.last, p.events FROM sub_pages p JOIN subscriptions s ON s.id = p.sub
		WHERE p.sub = ? AND p.last > ? AND p.last <= s.events ORDER BY p.last`, id, after)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.SubEvent
	for len(out) < limit && rows.Next() {
		var first, last int64
		var page []byte
		if err := rows.Scan(&first, &last, &page); err != nil {
			return nil, unavailableCtx(ctx, err)
		}
		if out, err = unpackSubEvents(out, page, first, last, after+1); err != nil {
			return nil, err
		}
	}
	if err := rows.Err(); err != nil {
		return nil, unavailableCtx(ctx, err)
	}
	return out[:min(len(out), limit)], nil
}
