package sqlite

import (
	"database/sql"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestHazard_DamagedAccessIndexFoundByTheCounts: the start-up check counts
// the indexes at once, the access records' first; an access-history index
// that lost an entry (the access history answers from audit_subject alone,
// and would hide that access) still refuses the start, sealed or not, while
// the other counts run beside it.
func TestHazard_DamagedAccessIndexFoundByTheCounts(t *testing.T) {
	for _, sealed := range []bool{false, true} {
		t.Run(fmt.Sprint("sealed=", sealed), func(t *testing.T) {
			dir := t.TempDir()
			path := sealedStore(t, dir)
			var def string
			db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
			require.NoError(t, err)
			require.NoError(t, db.QueryRow(`SELECT sql FROM sqlite_master WHERE name = 'audit_subject'`).Scan(&def))
			db.Close()
			// audit_subject takes no entry while one access is added.
			hideFromIndex(t, path, "audit_subject", def,
				`INSERT INTO audit(id, recorded, subject, agent, notify, owners, body) VALUES ('hidden', 1, '9449306753', 'u', 1, 'LA001', x'')`)
			requireRefusedAsDamaged(t, dir, path, sealed, "audit_subject")
		})
	}
}
