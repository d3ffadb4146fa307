package sqlite

import (
	"context"
	"strconv"
	"time"

	"cpis/store"
)

// deletedSQL reads tombstones through the partial index resources_deleted
// (owner, id) WHERE deleted = 1 (the literal deleted = 1 lets SQLite use
// it), each joined to the version it deleted, which history holds at the
// version before.
const deletedSQL = `SELECT r.type, r.id, r.version, r.updated, r.deleted, r.owner, r.subject, r.plan_end, r.ends,
	NULL, NULL, NULL, h.body, NULL
	FROM resources r JOIN history h ON h.type = r.type AND h.id = r.id AND h.version = r.version - 1
	WHERE r.deleted = 1 AND r.owner = ? AND r.type = ? AND r.updated >= ? AND r.id > ?
	ORDER BY r.id LIMIT `

// Deleted implements store.DeletedLister.
func (s *Store) Deleted(ctx context.Context, typ, owner string, since time.Time, after string, limit int) ([]store.Record, error) {
	if limit <= 0 {
		return nil, nil
	}
	return s.records(ctx, typ, deletedSQL+strconv.Itoa(limit), owner, typ, since.UnixNano(), after)
}
