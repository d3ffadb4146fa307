package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"cpis/store"
)

// Subscriptions: one row per subscription holding the resource and its
// outbox state, and its numbered events in sub_events. Every write is one
// transaction of the writer, so a conditional write (on the version, the
// lease or the cursor) is read and applied atomically.

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
		if _, err := tx.exec(ctx, `DELETE FROM sub_events WHERE sub = ?`, id); err != nil {
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
	return s.write(ctx, func(ctx context.Context, tx *writeTx) error {
		var last int64
		if len(evs) > 0 {
			last = evs[len(evs)-1].Number
		}
		res, err := tx.exec(ctx, sqlSubCursor, to, last, last, id, holder, epoch, from)
		if err := s.changed(ctx, tx, res, err, id); err != nil {
			return err
		}
		// The page's events in statements of subEventRows rows, then one
		// row each: prepared at Open and bound, which costs the writer a
		// third of reading the same rows out of one JSON array.
		args := make([]any, 0, 5*subEventRows)
		for len(evs) > 0 {
			q, n := sqlSubEvents, min(subEventRows, len(evs))
			if n < subEventRows {
				q, n = sqlSubEvent, 1
			}
			args = args[:0]
			for _, e := range evs[:n] {
				args = append(args, id, e.Number, e.Seq, e.Recorded.UnixNano(), e.ID)
			}
			if _, err := tx.exec(ctx, q, args...); err != nil {
				return unavailable(err)
			}
			evs = evs[n:]
		}
		return nil
	})
}

// The outbox's writes, prepared with the writer's statements.
const (
	sqlSubCursor = `UPDATE subscriptions SET cursor = ?, events = CASE WHEN ? > 0 THEN ? ELSE events END
			WHERE id = ? AND holder = ? AND epoch = ? AND cursor = ?`
	sqlSubEvent  = `INSERT OR REPLACE INTO sub_events(sub, number, seq, recorded, aid) VALUES (?, ?, ?, ?, ?)`
	subEventRows = 20
)

var sqlSubEvents = `INSERT OR REPLACE INTO sub_events(sub, number, seq, recorded, aid) VALUES (?, ?, ?, ?, ?)` +
	strings.Repeat(`, (?, ?, ?, ?, ?)`, subEventRows-1)

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

// SubEvents returns numbered events after a number.
func (s *Store) SubEvents(ctx context.Context, id string, after int64, limit int) ([]store.SubEvent, error) {
	rows, err := s.query(ctx, `SELECT e.number, e.seq, e.recorded, e.aid FROM sub_events e JOIN subscriptions s ON s.id = e.sub
		WHERE e.sub = ? AND e.number > ? AND e.number <= s.events ORDER BY e.number LIMIT ?`, id, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.SubEvent
	for rows.Next() {
		var e store.SubEvent
		var rec int64
		if err := rows.Scan(&e.Number, &e.Seq, &rec, &e.ID); err != nil {
			return nil, unavailableCtx(ctx, err)
		}
		e.Recorded = time.Unix(0, rec).UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailableCtx(ctx, err)
	}
	return out, nil
}
