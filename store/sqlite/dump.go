package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"cpis/store"
)

var (
	_ store.Dumper = (*Store)(nil)
	_ store.Loader = (*Store)(nil)
)

// Dump streams the whole store from one read transaction: a consistent
// snapshot, taken while a server may be writing. Records come in (type, id)
// order, merged from three index-ordered scans (resources, history, keys),
// so memory holds one record at a time.
func (s *Store) Dump(ctx context.Context, fn func(store.Item) error) error {
	if err := s.broken(); err != nil {
		return err
	}
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err == nil {
		// The snapshot starts with the first read.
		var n int64
		if err = tx.QueryRowContext(ctx, `SELECT count(*) FROM meta`).Scan(&n); err != nil {
			tx.Rollback()
		}
	}
	if err != nil {
		return unavailableCtx(ctx, err)
	}
	defer tx.Rollback()
	if err := dumpRecords(ctx, tx, fn); err != nil {
		return err
	}
	return dumpAudit(ctx, tx, fn)
}

func dumpRecords(ctx context.Context, tx *sql.Tx, fn func(store.Item) error) error {
	cur, err := tx.QueryContext(ctx, `SELECT `+cols+` FROM resources ORDER BY type, id`)
	if err != nil {
		return unavailableCtx(ctx, err)
	}
	defer cur.Close()
	hist, err := tx.QueryContext(ctx, `SELECT `+cols+` FROM history ORDER BY type, id, version`)
	if err != nil {
		return unavailableCtx(ctx, err)
	}
	defer hist.Close()
	keys, err := tx.QueryContext(ctx, `SELECT type, id, value FROM keys ORDER BY type, id`)
	if err != nil {
		return unavailableCtx(ctx, err)
	}
	defer keys.Close()

	var h *row // the next history row not yet used
	nextHist := func() error {
		h = nil
		if hist.Next() {
			r, err := scan(hist)
			if err != nil {
				return unavailableCtx(ctx, err)
			}
			h = &r
		}
		return hist.Err()
	}
	var k *[3]string
	nextKey := func() error {
		k = nil
		if keys.Next() {
			var v [3]string
			if err := keys.Scan(&v[0], &v[1], &v[2]); err != nil {
				return unavailableCtx(ctx, err)
			}
			k = &v
		}
		return keys.Err()
	}
	if err := nextHist(); err != nil {
		return err
	}
	if err := nextKey(); err != nil {
		return err
	}
	before := func(t1, i1, t2, i2 string) bool { return t1 < t2 || (t1 == t2 && i1 < i2) }
	for cur.Next() {
		r, err := scan(cur)
		if err != nil {
			return unavailableCtx(ctx, err)
		}
		var versions []store.Record
		for h != nil && !before(r.typ, r.id, h.typ, h.id) {
			if h.typ == r.typ && h.id == r.id {
				versions = append(versions, h.record(""))
			}
			if err := nextHist(); err != nil {
				return err
			}
		}
		last := r.record("")
		for k != nil && !before(r.typ, r.id, k[0], k[1]) {
			if k[0] == r.typ && k[1] == r.id {
				last.Keys = append(last.Keys, k[2])
			}
			if err := nextKey(); err != nil {
				return err
			}
		}
		slices.Sort(last.Keys)
		if err := fn(store.Item{Versions: append(versions, last)}); err != nil {
			return err
		}
	}
	return unavailableIf(ctx, cur.Err())
}

func dumpAudit(ctx context.Context, tx *sql.Tx, fn func(store.Item) error) error {
	rows, err := tx.QueryContext(ctx, `SELECT `+auditCols+` FROM audit a ORDER BY a.seq`)
	if err != nil {
		return unavailableCtx(ctx, err)
	}
	defer rows.Close()
	for rows.Next() {
		var a store.AuditRecord
		var seq, recorded int64
		var owners string
		var views []byte
		if err := rows.Scan(&seq, &a.ID, &recorded, &a.Subject, &a.Agent, &a.Notify, &owners, &a.Body, &views); err != nil {
			return unavailableCtx(ctx, err)
		}
		if a.Body, err = unpackBody(a.Body); err != nil {
			return unavailable(err)
		}
		if views, err = unpackBody(views); err != nil {
			return unavailable(err)
		}
		if a.Views, err = decodeViews(views); err != nil {
			return err
		}
		a.Recorded = time.Unix(0, recorded).UTC()
		a.Owners = strings.Fields(owners)
		a.Seq = seq
		if err := fn(store.Item{Audit: &a, Seq: seq}); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return unavailableCtx(ctx, err)
	}
	rows.Close()
	var high sql.NullInt64
	err = tx.QueryRowContext(ctx, `SELECT seq FROM sqlite_sequence WHERE name = 'audit'`).Scan(&high)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return unavailableCtx(ctx, err)
	}
	return fn(store.Item{Seq: high.Int64})
}

func unavailableIf(ctx context.Context, err error) error {
	if err != nil {
		return unavailableCtx(ctx, err)
	}
	return nil
}

// Empty reports whether the store holds no record and no access record.
func (s *Store) Empty(ctx context.Context) (bool, error) {
	rows, err := s.query(ctx, `SELECT (SELECT count(*) FROM (SELECT 1 FROM resources LIMIT 1)) + (SELECT count(*) FROM (SELECT 1 FROM audit LIMIT 1))`)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	n := 0
	if rows.Next() {
		if err := rows.Scan(&n); err != nil {
			return false, unavailableCtx(ctx, err)
		}
	}
	return n == 0, unavailableIf(ctx, rows.Err())
}

// loadBatch is how many items one load transaction holds.
const loadBatch = 500

// Load writes the items through the writer, loadBatch to a transaction.
// Each version goes where Commit would have put it (the current one in
// resources, earlier ones in history), access records keep their sequence
// numbers, and the sequence counter is raised to the dump's mark.
func (s *Store) Load(ctx context.Context, next func() (store.Item, error)) error {
	for done := false; !done; {
		var batch []store.Item
		for len(batch) < loadBatch {
			it, err := next()
			if errors.Is(err, io.EOF) {
				done = true
				break
			}
			if err != nil {
				return err
			}
			batch = append(batch, it)
		}
		if len(batch) == 0 {
			break
		}
		err := s.write(ctx, func(ctx context.Context, tx *writeTx) error {
			for _, it := range batch {
				if err := loadItem(ctx, tx, it); err != nil {
					return err
				}
			}
			// Access records keep their own sequence numbers: the feed's
			// marks count again (see feedmark.go).
			if _, err := tx.exec(ctx, sqlFeedChanged); err != nil {
				return unavailable(err)
			}
			return nil
		})
		s.noteWrite(ctx, err)
		if err != nil {
			return err
		}
	}
	return nil
}

func loadItem(ctx context.Context, tx *writeTx, it store.Item) error {
	switch {
	case len(it.Versions) > 0:
		last := it.Versions[len(it.Versions)-1]
		for i, v := range it.Versions {
			q := `INSERT INTO history(` + cols + `) VALUES ` + colValues
			if i == len(it.Versions)-1 {
				q = sqlLoadResource
			}
			if v.Type != last.Type || v.ID != last.ID {
				return fmt.Errorf("store/sqlite: load: a record's versions name %s/%s and %s/%s", v.Type, v.ID, last.Type, last.ID)
			}
			if _, err := tx.exec(ctx, q, values(v)...); err != nil {
				return fmt.Errorf("store/sqlite: load %s/%s version %d: %w", v.Type, v.ID, v.Version, err)
			}
		}
		if !last.Deleted {
			for _, k := range last.Keys {
				if _, err := tx.exec(ctx, sqlInsertKey, last.Type, k, last.ID); err != nil {
					return fmt.Errorf("store/sqlite: load %s/%s: key: %w", last.Type, last.ID, err)
				}
			}
		}
	case it.Audit != nil:
		a := it.Audit
		var views any
		if len(a.Views) > 0 {
			b, err := encodeViews(a.Views)
			if err != nil {
				return err
			}
			views = packBody(b)
		}
		if _, err := tx.exec(ctx, `INSERT INTO audit(seq, id, recorded, subject, agent, notify, owners, body, views) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			it.Seq, a.ID, a.Recorded.UnixNano(), a.Subject, a.Agent, a.Notify, strings.Join(a.Owners, " "), packBody(a.Body), views); err != nil {
			return fmt.Errorf("store/sqlite: load access record %d: %w", it.Seq, err)
		}
		if a.Notify {
			for _, o := range a.Owners {
				if _, err := tx.exec(ctx, sqlInsertOwner, o, it.Seq, a.Recorded.UnixNano()); err != nil {
					return unavailable(err)
				}
			}
		}
	default:
		// The sequence mark. sqlite_sequence has the audit row once an
		// access record has been inserted (one may never have been).
		if _, err := tx.exec(ctx, `UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'audit'`, it.Seq); err != nil {
			return unavailable(err)
		}
		if _, err := tx.exec(ctx, `INSERT INTO sqlite_sequence(name, seq) SELECT 'audit', ? WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'audit')`, it.Seq); err != nil {
			return unavailable(err)
		}
	}
	return nil
}
