package sqlite

import (
	"context"
	"fmt"
	"strconv"

	"cpis/store"
)

// TypeHistory returns versions of a type's records, newest first: the
// current versions (resources) and the earlier ones (history), each table
// read through its (owner, type, updated) index from the keyset position.
func (s *Store) TypeHistory(ctx context.Context, q store.HistoryQuery) ([]store.Record, error) {
	if q.Type == "" || q.Owner == "" || q.Limit <= 0 {
		return nil, fmt.Errorf("store/sqlite: a type history needs a type, an owner and a limit")
	}
	cond := `owner = ? AND type = ?`
	args := []any{q.Owner, q.Type}
	if !q.Since.IsZero() {
		cond += ` AND updated >= ?`
		args = append(args, q.Since.UnixNano())
	}
	if !q.Before.IsZero() {
		cond += ` AND updated < ?`
		args = append(args, q.Before.UnixNano())
	}
	if !q.After.Updated.IsZero() {
		u := q.After.Updated.UnixNano()
		cond += ` AND (updated < ? OR (updated = ? AND (id < ? OR (id = ? AND version < ?))))`
		args = append(args, u, u, q.After.ID, q.After.ID, q.After.Version)
	}
	limit := strconv.Itoa(q.Limit)
	// Each arm is limited on its own, so neither table is read past the
	// page; the union is then ordered and cut again.
	sqlText := `SELECT * FROM (SELECT ` + cols + ` FROM resources WHERE ` + cond + ` ORDER BY updated DESC, id DESC, version DESC LIMIT ` + limit + `)
		UNION ALL SELECT * FROM (SELECT ` + cols + ` FROM history WHERE ` + cond + ` ORDER BY updated DESC, id DESC, version DESC LIMIT ` + limit + `)
		ORDER BY updated DESC, id DESC, version DESC LIMIT ` + limit
	return s.records(ctx, q.Type, sqlText, append(append([]any{}, args...), args...)...)
}

var _ store.TypeHistorian = (*Store)(nil)
