package sqlite

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"cpis/store"
)

// Audit stores access records in the next group commit and returns once the
// commit is durable.
func (s *Store) Audit(ctx context.Context, recs []store.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	return s.write(ctx, func(ctx context.Context, tx *writeTx) error {
		for _, a := range recs {
			res, err := tx.exec(ctx, sqlInsertAudit,
				a.ID, a.Recorded.UnixNano(), a.Subject, a.Agent, a.Notify, a.Body)
			if err != nil {
				return unavailable(err)
			}
			seq, err := res.LastInsertId()
			if err != nil {
				return unavailable(err)
			}
			for _, o := range a.Owners {
				if _, err := tx.exec(ctx, sqlInsertOwner, o, seq); err != nil {
					return unavailable(err)
				}
			}
		}
		return nil
	})
}

const auditCols = `a.seq, a.id, a.recorded, a.subject, a.agent, a.notify, a.body`

func (s *Store) auditRecords(ctx context.Context, q string, args ...any) ([]store.AuditRecord, int64, error) {
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var out []store.AuditRecord
	var last int64
	for rows.Next() {
		var a store.AuditRecord
		var recorded int64
		if err := rows.Scan(&last, &a.ID, &recorded, &a.Subject, &a.Agent, &a.Notify, &a.Body); err != nil {
			return nil, 0, unavailable(err)
		}
		a.Recorded = time.Unix(0, recorded).UTC()
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, unavailable(err)
	}
	if err := s.fillOwners(ctx, out); err != nil {
		return nil, 0, err
	}
	return out, last, nil
}

func (s *Store) fillOwners(ctx context.Context, recs []store.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	ids := make([]any, len(recs))
	index := make(map[string]int, len(recs))
	for i, a := range recs {
		ids[i] = a.ID
		index[a.ID] = i
	}
	rows, err := s.r.QueryContext(ctx, `SELECT a.id, o.owner FROM audit a JOIN audit_owner o ON o.seq = a.seq WHERE a.id IN (`+placeholders(len(ids))+`) ORDER BY o.owner`, ids...)
	if err != nil {
		return unavailable(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, owner string
		if err := rows.Scan(&id, &owner); err != nil {
			return unavailable(err)
		}
		recs[index[id]].Owners = append(recs[index[id]].Owners, owner)
	}
	return rows.Err()
}

// AuditBySubject returns the notifying access records about subject since a
// time, oldest first.
func (s *Store) AuditBySubject(ctx context.Context, subject string, since time.Time) ([]store.AuditRecord, error) {
	recs, _, err := s.auditRecords(ctx, `SELECT `+auditCols+` FROM audit a WHERE a.subject = ? AND a.notify = 1 AND a.recorded >= ? ORDER BY a.recorded, a.seq`,
		subject, since.UnixNano())
	return recs, err
}

// AuditFeed pages through the access records that touched owner's records.
// The cursor is the last sequence number served: sequence numbers are
// assigned inside the single writer's transaction, so a record committed
// later always has a larger one and paging never skips or repeats.
func (s *Store) AuditFeed(ctx context.Context, owner string, since time.Time, cursor string, limit int) ([]store.AuditRecord, string, error) {
	after := int64(0)
	if cursor != "" {
		n, err := strconv.ParseInt(strings.TrimPrefix(cursor, "s"), 10, 64)
		if err != nil || !strings.HasPrefix(cursor, "s") || n < 0 {
			return nil, "", fmt.Errorf("store/sqlite: %w", store.ErrInvalidCursor)
		}
		after = n
	}
	recs, last, err := s.auditRecords(ctx, `SELECT `+auditCols+` FROM audit_owner o JOIN audit a ON a.seq = o.seq
		WHERE o.owner = ? AND o.seq > ? AND a.notify = 1 AND a.recorded >= ? ORDER BY o.seq LIMIT `+strconv.Itoa(limit),
		owner, after, since.UnixNano())
	if err != nil {
		return nil, "", err
	}
	if len(recs) == 0 {
		return nil, cursor, nil
	}
	return recs, "s" + strconv.FormatInt(last, 10), nil
}

// Purge removes what ended before cutoff, a bounded batch per commit so the
// writer is never held for long.
func (s *Store) Purge(ctx context.Context, cutoff time.Time) (store.PurgeStats, error) {
	var stats store.PurgeStats
	const batch = 500
	for {
		n := 0
		err := s.write(ctx, func(ctx context.Context, tx *writeTx) error {
			rows, err := tx.query(ctx, `SELECT type, id FROM resources WHERE plan_end IS NOT NULL AND plan_end < ? LIMIT `+strconv.Itoa(batch), cutoff.UnixNano())
			if err != nil {
				return unavailable(err)
			}
			var refs [][2]string
			for rows.Next() {
				var t, id string
				if err := rows.Scan(&t, &id); err != nil {
					rows.Close()
					return unavailable(err)
				}
				refs = append(refs, [2]string{t, id})
			}
			rows.Close()
			for _, ref := range refs {
				for _, q := range []string{`DELETE FROM resources WHERE type = ? AND id = ?`, `DELETE FROM history WHERE type = ? AND id = ?`, `DELETE FROM keys WHERE type = ? AND id = ?`} {
					if _, err := tx.exec(ctx, q, ref[0], ref[1]); err != nil {
						return unavailable(err)
					}
				}
			}
			n = len(refs)
			return nil
		})
		if err != nil {
			return stats, err
		}
		stats.Records += n
		if n < batch {
			break
		}
	}
	for {
		var n int64
		err := s.write(ctx, func(ctx context.Context, tx *writeTx) error {
			res, err := tx.exec(ctx, `DELETE FROM audit WHERE seq IN (SELECT seq FROM audit a WHERE a.recorded < ?
				AND NOT EXISTS (SELECT 1 FROM resources r WHERE r.subject = a.subject) LIMIT `+strconv.Itoa(batch)+`)`, cutoff.UnixNano())
			if err != nil {
				return unavailable(err)
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return stats, err
		}
		stats.Audit += int(n)
		if n < batch {
			break
		}
	}
	return stats, nil
}
