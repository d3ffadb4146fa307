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

// cols are a version's columns in resources and history, blobs last (start
// was added by layout 12, after the blobs in the table, but is read with the
// others).
const cols = `type, id, version, updated, deleted, owner, subject, plan_end, ends, start, dtype, dends, body, dbody`

// colValues are the placeholders of cols.
const colValues = `(?,?,?,?,?,?,?,?,?,?,?,?,?,?)`

func splitCols(list string) []string {
	parts := strings.Split(list, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

// row is one stored version, as the columns hold it.
type row struct {
	typ, id          string
	version, updated int64
	deleted          bool
	owner, subject   string
	end, ends, dends sql.NullInt64
	start            sql.NullInt64 // Unix milliseconds (store.StartAt)
	dtype            sql.NullString
	body, dbody      []byte
}

func scan(sc interface{ Scan(...any) error }) (row, error) {
	var r row
	err := sc.Scan(r.dests()...)
	return r, err
}

// dests are the scan destinations of cols, in order.
func (r *row) dests() []any {
	return []any{&r.typ, &r.id, &r.version, &r.updated, &r.deleted, &r.owner, &r.subject, &r.end,
		&r.ends, &r.start, &r.dtype, &r.dends, &r.body, &r.dbody}
}

// record returns the row as a record of type typ: the row's own resource, or
// the resource derived from it.
func (r row) record(typ string) store.Record {
	rec := store.Record{
		Type: r.typ, ID: r.id, Version: r.version, Updated: fromNanos(sql.NullInt64{Int64: r.updated, Valid: true}),
		Deleted: r.deleted, Owner: r.owner, Subject: r.subject, End: fromNanos(r.end),
		Body: r.body, Ends: fromNanos(r.ends), Start: fromMillis(r.start),
	}
	if r.dtype.Valid {
		d := &store.Derived{Type: r.dtype.String, Body: r.dbody, Ends: fromNanos(r.dends)}
		if typ == d.Type {
			rec.Type, rec.Body, rec.Ends = d.Type, d.Body, d.Ends
			return rec
		}
		rec.Derived = d
	}
	return rec
}

// Commit applies writes in one transaction.
func (s *Store) Commit(ctx context.Context, writes []store.Write) error {
	if len(writes) == 0 {
		return nil
	}
	for _, w := range writes {
		if err := w.Check(); err != nil {
			return err
		}
	}
	err := s.write(ctx, func(ctx context.Context, tx *writeTx) error {
		for _, w := range writes {
			if err := apply(ctx, tx, w); err != nil {
				return err
			}
		}
		return nil
	})
	s.noteWrite(ctx, err)
	return err
}

func apply(ctx context.Context, tx *writeTx, w store.Write) error {
	r := w.Record
	var cur int64
	err := tx.queryRow(ctx, sqlVersion, r.Type, r.ID).Scan(&cur)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		cur = 0
	case err != nil:
		return unavailable(err)
	}
	if cur != w.Expect {
		return fmt.Errorf("store/sqlite: %s/%s is at version %d, not %d: %w", r.Type, r.ID, cur, w.Expect, store.ErrVersionConflict)
	}
	if cur > 0 {
		if _, err := tx.exec(ctx, sqlDeleteKeys, r.Type, r.ID); err != nil {
			return unavailable(err)
		}
	}
	if !r.Deleted {
		for _, k := range r.Keys {
			_, err := tx.exec(ctx, sqlInsertKey, r.Type, k, r.ID)
			if err == nil {
				continue
			}
			if !isConstraint(err) {
				return unavailable(err)
			}
			// The key is held: name the holder (the operation is rolled back).
			holder := r.ID
			if err := tx.queryRow(ctx, sqlKeyHolder, r.Type, k).Scan(&holder); err != nil && !errors.Is(err, sql.ErrNoRows) {
				return unavailable(err)
			}
			return fmt.Errorf("store/sqlite: %w", &store.UniqueError{Type: r.Type, Key: k, HeldBy: holder})
		}
	}
	// The version being replaced moves to history; resources keeps only the
	// current one.
	if cur > 0 {
		if _, err := tx.exec(ctx, sqlToHistory, r.Type, r.ID); err != nil {
			if isConstraint(err) {
				return fmt.Errorf("store/sqlite: %s/%s version %d is already in history: %w", r.Type, r.ID, cur, store.ErrVersionConflict)
			}
			return unavailable(err)
		}
	}
	if _, err := tx.exec(ctx, sqlUpsertResource, values(r)...); err != nil {
		return unavailable(err)
	}
	return nil
}

func values(r store.Record) []any {
	var dtype, dends any
	var dbody []byte
	if r.Derived != nil {
		dtype, dbody, dends = r.Derived.Type, r.Derived.Body, nanos(r.Derived.Ends)
	}
	return []any{r.Type, r.ID, r.Version, r.Updated.UnixNano(), r.Deleted, r.Owner, r.Subject, nanos(r.End),
		nanos(r.Ends), millis(r.Start), dtype, dends, r.Body, dbody}
}

// millis is a Start as the start column holds it: Unix milliseconds, or
// NULL for none.
func millis(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

func fromMillis(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.UnixMilli(n.Int64).UTC()
}

// The writer's statements, prepared once.
const (
	sqlVersion        = `SELECT version FROM resources WHERE type = ? AND id = ?`
	sqlDeleteKeys     = `DELETE FROM keys WHERE type = ? AND id = ?`
	sqlKeyHolder      = `SELECT id FROM keys WHERE type = ? AND value = ?`
	sqlInsertKey      = `INSERT INTO keys(type, value, id) VALUES (?, ?, ?)`
	sqlUpsertResource = `INSERT INTO resources(` + cols + `) VALUES ` + colValues + `
		ON CONFLICT(type, id) DO UPDATE SET version = excluded.version, updated = excluded.updated,
		deleted = excluded.deleted, owner = excluded.owner, subject = excluded.subject, plan_end = excluded.plan_end,
		ends = excluded.ends, start = excluded.start, dtype = excluded.dtype, dends = excluded.dends, body = excluded.body, dbody = excluded.dbody`
	sqlToHistory   = `INSERT INTO history(` + cols + `) SELECT ` + cols + ` FROM resources WHERE type = ? AND id = ?`
	sqlInsertAudit = `INSERT INTO audit(id, recorded, subject, agent, notify, owners, body) VALUES (?, ?, ?, ?, ?, ?, ?)`
	sqlInsertOwner = `INSERT OR IGNORE INTO audit_owner(owner, seq, recorded) VALUES (?, ?, ?)`
)

// writerStatements are prepared on the writer's connection at Open.
func writerStatements() []string {
	return []string{sqlVersion, sqlDeleteKeys, sqlKeyHolder, sqlInsertKey, sqlUpsertResource, sqlToHistory,
		sqlInsertAudit, sqlInsertOwner, `SAVEPOINT op`, `ROLLBACK TO op`, `RELEASE op`,
		sqlPurgeRecord, sqlPurgeHistory, sqlPurgeKeys, sqlPurgeAudit, sqlPurgeFeedRow, sqlFeedChanged,
		sqlSubCursor, sqlSubPage}
}

const getSQL = `SELECT ` + cols + ` FROM resources WHERE (type = ? OR dtype = ?) AND id = ? LIMIT 1`

// Get returns the current version of a record or of a derived record: one
// statement, seeking the primary key and the derived-record index.
func (s *Store) Get(ctx context.Context, typ, id string) (store.Record, error) {
	recs, err := s.records(ctx, typ, getSQL, typ, typ, id)
	if err != nil {
		return store.Record{}, err
	}
	if len(recs) == 0 {
		return store.Record{}, fmt.Errorf("store/sqlite: %s/%s: %w", typ, id, store.ErrNotFound)
	}
	return recs[0], nil
}

// GetVersion returns one version of a record or of a derived record.
func (s *Store) GetVersion(ctx context.Context, typ, id string, version int64) (store.Record, error) {
	src, err := s.sourceType(ctx, typ, id)
	if err != nil {
		return store.Record{}, err
	}
	recs, err := s.records(ctx, typ, `SELECT `+cols+` FROM resources WHERE type = ? AND id = ? AND version = ?
		UNION ALL SELECT `+cols+` FROM history WHERE type = ? AND id = ? AND version = ?`, src, id, version, src, id, version)
	if err != nil {
		return store.Record{}, err
	}
	if len(recs) == 0 || recs[0].Type != typ {
		return store.Record{}, fmt.Errorf("store/sqlite: %s/%s/_history/%d: %w", typ, id, version, store.ErrNotFound)
	}
	return recs[0], nil
}

// History returns all versions, newest first.
func (s *Store) History(ctx context.Context, typ, id string) ([]store.Record, error) {
	src, err := s.sourceType(ctx, typ, id)
	if err != nil {
		return nil, err
	}
	recs, err := s.records(ctx, typ, `SELECT `+cols+` FROM resources WHERE type = ? AND id = ?
		UNION ALL SELECT `+cols+` FROM history WHERE type = ? AND id = ? ORDER BY version DESC`, src, id, src, id)
	if err != nil {
		return nil, err
	}
	out := recs[:0]
	for _, r := range recs {
		if r.Type == typ {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("store/sqlite: %s/%s: %w", typ, id, store.ErrNotFound)
	}
	return out, nil
}

// sourceType finds the stored type that holds typ/id: typ itself, or the
// type a derived record of type typ lives in.
func (s *Store) sourceType(ctx context.Context, typ, id string) (string, error) {
	rows, err := s.query(ctx, `SELECT type FROM resources WHERE (type = ? OR dtype = ?) AND id = ? LIMIT 1`, typ, typ, id)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return "", unavailableCtx(ctx, err)
		}
		return "", fmt.Errorf("store/sqlite: %s/%s: %w", typ, id, store.ErrNotFound)
	}
	var src string
	if err := rows.Scan(&src); err != nil {
		return "", unavailableCtx(ctx, err)
	}
	return src, rows.Close()
}

func (s *Store) records(ctx context.Context, typ, q string, args ...any) ([]store.Record, error) {
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Record
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return nil, unavailableCtx(ctx, err)
		}
		out = append(out, r.record(typ))
	}
	if err := rows.Err(); err != nil {
		return nil, unavailableCtx(ctx, err)
	}
	return out, nil
}

// holderChunk is how many keys one statement of Holders asks about. Every
// statement has exactly this many placeholders (a shorter chunk repeats its
// first key), so one prepared statement serves every upload.
const holderChunk = 256

// sqlHolders reads the live record holding each key of a chunk, with the
// key: the keys table's primary key, then the record by its (type, id).
var sqlHolders = `SELECT k.value, ` + prefixed("r", cols) + ` FROM keys k
	JOIN resources r ON r.type = k.type AND r.id = k.id
	WHERE k.type = ? AND k.value IN (` + placeholders(holderChunk) + `) AND r.deleted = 0`

// Holders returns the live record of typ holding each key: one statement a
// chunk of holderChunk keys, each row the key with its record.
func (s *Store) Holders(ctx context.Context, typ string, keys []string) (map[string]store.Record, error) {
	out := make(map[string]store.Record, len(keys))
	args := make([]any, 1+holderChunk)
	for chunk := range slices.Chunk(keys, holderChunk) {
		args[0] = typ
		for i := range holderChunk {
			args[1+i] = chunk[min(i, len(chunk)-1)]
		}
		if err := s.holders(ctx, typ, args, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *Store) holders(ctx context.Context, typ string, args []any, out map[string]store.Record) error {
	rows, err := s.query(ctx, sqlHolders, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var key string
		var r row
		if err := rows.Scan(append([]any{&key}, r.dests()...)...); err != nil {
			return unavailableCtx(ctx, err)
		}
		out[key] = r.record(typ)
	}
	if err := rows.Err(); err != nil {
		return unavailableCtx(ctx, err)
	}
	return nil
}

// Search returns live records matching q. The total is counted only when
// the page does not already hold every match.
func (s *Store) Search(ctx context.Context, q store.Query) ([]store.Record, int, error) {
	if recs, total, ok, err := s.indexSearch(ctx, q); ok {
		return recs, total, err
	}
	cond, args := searchWhere(q)
	var recs []store.Record
	if q.Limit > 0 {
		pageSQL, pageArgs := pageQuery(q, cond, args)
		var err error
		recs, err = s.records(ctx, q.Type, pageSQL, pageArgs...)
		if err != nil {
			return nil, 0, err
		}
		if !q.Count || (q.After == "" && len(recs) < q.Limit) {
			return recs, len(recs), nil
		}
	}
	if !q.Count {
		return recs, 0, nil
	}
	rows, err := s.query(ctx, `SELECT count(*) FROM resources WHERE `+cond, args...)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	total := 0
	if rows.Next() {
		if err := rows.Scan(&total); err != nil {
			return nil, 0, unavailableCtx(ctx, err)
		}
	}
	return recs, total, rows.Err()
}

// searchWhere builds the WHERE clause of a query. The type test is written
// +type/+dtype when a more selective condition is present, so SQLite seeks
// by subject, owner or id instead of scanning every record of the type;
// keys belong to primary records only, so a key query seeks the primary key.
func searchWhere(q store.Query) (string, []any) {
	where := []string{`(type = ? OR dtype = ?)`, `deleted = 0`}
	args := []any{q.Type, q.Type}
	switch {
	case q.Key != "" || q.OwnKey != "":
		where[0], args = `type = ?`, args[:1]
	case q.Subject != "" || len(q.Subjects) > 0 || q.Owner != "" || len(q.IDs) > 0:
		where[0] = `(+type = ? OR +dtype = ?)`
	}
	if len(q.IDs) > 0 {
		where = append(where, `id IN (`+placeholders(len(q.IDs))+`)`)
		for _, id := range q.IDs {
			args = append(args, id)
		}
	}
	if q.Subject != "" {
		where = append(where, `subject = ?`)
		args = append(args, q.Subject)
	}
	if len(q.Subjects) > 0 {
		where = append(where, `subject IN (`+placeholders(len(q.Subjects))+`)`)
		for _, s := range q.Subjects {
			args = append(args, s)
		}
	}
	if q.Owner != "" && (q.Subject != "" || len(q.Subjects) > 0) {
		// A child's plans in one authority: seek the child (a few records),
		// never walk the authority's thousands in id order, which SQLite
		// otherwise chose to save sorting the few.
		where = append(where, `+owner = ?`)
		args = append(args, q.Owner)
	} else if q.Owner != "" {
		where = append(where, `owner = ?`)
		args = append(args, q.Owner)
	}
	if q.Key != "" {
		where = append(where, `id IN (SELECT id FROM keys WHERE type = ? AND value = ?)`)
		args = append(args, q.Type, q.Key)
	}
	if q.OwnKey != "" {
		// Correlated on the record's id (the keys_id index) and its owner.
		where = append(where, `EXISTS (SELECT 1 FROM keys k WHERE k.type = resources.type AND k.id = resources.id AND k.value = resources.owner || '|' || ?)`)
		args = append(args, q.OwnKey)
	}
	if !q.RetainedSince.IsZero() {
		where = append(where, `(plan_end IS NULL OR plan_end >= ?)`)
		args = append(args, q.RetainedSince.UnixNano())
	}
	if !q.UpdatedFrom.IsZero() {
		where = append(where, `updated >= ?`)
		args = append(args, q.UpdatedFrom.UnixNano())
	}
	if !q.UpdatedTo.IsZero() {
		where = append(where, `updated < ?`)
		args = append(args, q.UpdatedTo.UnixNano())
	}
	return strings.Join(where, ` AND `), args
}

// pageQuery is the statement of one page of a search. The limit is written
// into the SQL, not bound: SQLite plans with a bound LIMIT's value, so
// rebinding it made every run re-prepare.
func pageQuery(q store.Query, cond string, args []any) (string, []any) {
	limit := ` LIMIT ` + strconv.Itoa(q.Limit)
	if q.Sort == store.SortStart || q.Sort == store.SortStartDesc {
		return startPage(q, cond, args, limit)
	}
	pageCond, pageArgs, order := pageWhere(q, cond, args)
	if q.Sort == store.SortNone {
		return `SELECT ` + cols + ` FROM resources WHERE ` + pageCond + limit, pageArgs
	}
	return `SELECT ` + cols + ` FROM resources WHERE ` + pageCond + ` ORDER BY ` + order + limit, pageArgs
}

// startPage is a page of a sort by start: the records with a start in
// (start, id) order from the position, then those with none (NULL) by id,
// each part read in index order (resources_owner_start for an LA's) and
// cut to the limit, the two put together in one statement (one snapshot).
// A position among the records with no start reads only those.
func startPage(q store.Query, cond string, args []any, limit string) (string, []any) {
	cmp, dir := ">", ""
	if q.Sort == store.SortStartDesc {
		cmp, dir = "<", " DESC"
	}
	var parts []string
	var out []any
	if q.After == "" || !q.AfterStart.IsZero() {
		c, a := cond+` AND start IS NOT NULL`, append([]any{}, args...)
		if q.After != "" {
			ms := q.AfterStart.UnixMilli()
			// The first bound is a range on the index; the second cuts
			// the tie.
			c += ` AND start ` + cmp + `= ? AND (start ` + cmp + ` ? OR id ` + cmp + ` ?)`
			a = append(a, ms, ms, q.After)
		}
		parts = append(parts, `SELECT * FROM (SELECT `+cols+` FROM resources WHERE `+c+` ORDER BY start`+dir+`, id`+dir+limit+`)`)
		out = append(out, a...)
	}
	c, a := cond+` AND start IS NULL`, append([]any{}, args...)
	if q.After != "" && q.AfterStart.IsZero() {
		c += ` AND id ` + cmp + ` ?`
		a = append(a, q.After)
	}
	parts = append(parts, `SELECT * FROM (SELECT `+cols+` FROM resources WHERE `+c+` ORDER BY id`+dir+limit+`)`)
	out = append(out, a...)
	return `SELECT ` + cols + ` FROM (` + strings.Join(parts, ` UNION ALL `) + `) ORDER BY start IS NULL, start` + dir + `, id` + dir + limit, out
}

// pageWhere adds a page's keyset position to a query's condition and
// returns its order: by id, or by (updated, id) either way.
func pageWhere(q store.Query, cond string, args []any) (string, []any, string) {
	args = append([]any{}, args...)
	switch q.Sort {
	case store.SortUpdated:
		if q.After != "" {
			cond += ` AND (updated > ? OR (updated = ? AND id > ?))`
			u := q.AfterUpdated.UnixNano()
			args = append(args, u, u, q.After)
		}
		return cond, args, `updated, id`
	case store.SortUpdatedDesc:
		if q.After != "" {
			cond += ` AND (updated < ? OR (updated = ? AND id < ?))`
			u := q.AfterUpdated.UnixNano()
			args = append(args, u, u, q.After)
		}
		return cond, args, `updated DESC, id DESC`
	}
	if q.After != "" {
		cond += ` AND id > ?`
		args = append(args, q.After)
	}
	return cond, args, `id`
}
