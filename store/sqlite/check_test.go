package sqlite

import (
	"database/sql"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
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
			exec := func(stmts ...string) {
				db, err := sql.Open("sqlite", "file:"+path)
				require.NoError(t, err)
				defer db.Close()
				db.SetMaxOpenConns(1)
				for _, q := range stmts {
					_, err := db.Exec(q)
					require.NoError(t, err, q)
				}
			}
			var def string
			db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
			require.NoError(t, err)
			require.NoError(t, db.QueryRow(`SELECT sql FROM sqlite_master WHERE name = 'audit_subject'`).Scan(&def))
			db.Close()
			// audit_subject takes no entry while one access is added.
			exec(`PRAGMA writable_schema = ON`,
				`UPDATE sqlite_master SET sql = '`+def+` WHERE 0' WHERE name = 'audit_subject'`)
			exec(`INSERT INTO audit(id, recorded, subject, agent, notify, owners, body) VALUES ('hidden', 1, '9449306753', 'u', 1, 'LA001', x'')`)
			exec(`PRAGMA writable_schema = ON`,
				`UPDATE sqlite_master SET sql = '`+def+`' WHERE name = 'audit_subject'`)
			require.NoError(t, os.Remove(path+sealSuffix))
			if sealed {
				sealMu.Lock()
				require.NoError(t, writeSeal(path))
				sealMu.Unlock()
			}
			s, logs, err := openLogged(dir)
			if err == nil {
				s.Close()
			}
			require.Error(t, err)
			assert.Equal(t, sealed, strings.Contains(logs, "quick_check skipped"), logs)
			assert.Contains(t, err.Error(), "damaged")
			assert.Contains(t, err.Error(), "audit_subject")
		})
	}
}
