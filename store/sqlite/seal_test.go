package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
)

// sealedStore makes a store with plans and access records in dir, closes
// it cleanly (which seals it) and returns the database's path.
func sealedStore(t *testing.T, dir string) string {
	t.Helper()
	s, err := Open(dir, Options{})
	require.NoError(t, err)
	ctx := context.Background()
	for i := 0; i < 200; i++ {
		require.NoError(t, s.Commit(ctx, []store.Write{{Record: store.Record{
			Type: "EpisodeOfCare", ID: fmt.Sprint("p", i), Version: 1, Updated: time.Now(), Owner: "LA001", Subject: fmt.Sprintf("94%08d", i),
			Body: bytes.Repeat([]byte("x"), 900), Derived: &store.Derived{Type: "Flag", Body: bytes.Repeat([]byte("y"), 500)},
		}}}))
	}
	recs := make([]store.AuditRecord, 0, 3000)
	for i := 0; i < cap(recs); i++ {
		recs = append(recs, store.AuditRecord{ID: fmt.Sprint("a", i), Recorded: time.Now(), Subject: fmt.Sprintf("94%08d", i%200), Agent: "u",
			Notify: true, Owners: []string{"LA001"}, Body: []byte(fmt.Sprintf(`{"resourceType":"AuditEvent","id":"a%d"}`, i))})
	}
	require.NoError(t, s.Audit(ctx, recs))
	require.NoError(t, s.Close())
	path := filepath.Join(dir, FileName)
	require.FileExists(t, path+sealSuffix, "a clean close seals the database")
	require.NoFileExists(t, path+"-wal")
	return path
}

func openLogged(dir string) (*Store, string, error) {
	var logs bytes.Buffer
	s, err := Open(dir, Options{Log: slog.New(slog.NewJSONHandler(&logs, nil))})
	return s, logs.String(), err
}

// TestSealSkipsQuickCheckAfterACleanShutdown: a database as its clean
// shutdown left it opens without PRAGMA quick_check (the index counts and
// the plan sample still run), takes its seal away at once (a crash later
// leaves no seal), and a store that is not closed leaves none.
func TestSealSkipsQuickCheckAfterACleanShutdown(t *testing.T) {
	dir := t.TempDir()
	path := sealedStore(t, dir)
	s, logs, err := openLogged(dir)
	require.NoError(t, err)
	assert.Contains(t, logs, "quick_check skipped")
	assert.Contains(t, logs, `"sealed":true`)
	assert.Contains(t, logs, "not counted again", "the shutdown counted the indexes")
	assert.Contains(t, logs, `"counted_at_shutdown":true`)
	assert.NoFileExists(t, path+sealSuffix, "the seal is taken at open")
	_, err = s.Get(context.Background(), "Flag", "p7")
	require.NoError(t, err)

	// A second store on the file while the first is open finds no seal,
	// and closing it leaves none: the first still has the file open.
	s2, logs, err := openLogged(dir)
	require.NoError(t, err)
	assert.NotContains(t, logs, "quick_check skipped")
	assert.Contains(t, logs, `"sealed":false`)
	assert.NotContains(t, logs, "not counted again")
	require.NoError(t, s2.Close())
	assert.NoFileExists(t, path+sealSuffix, "no seal while another connection has the file")
	require.NoError(t, s.Close())
	assert.FileExists(t, path+sealSuffix)
}

// TestHazard_SealedDatabaseDamagedAfterShutdown: a database damaged,
// truncated, emptied or replaced after a clean shutdown is still refused
// at open, its seal notwithstanding. The damaged case keeps the file's
// size and modification time, so only the checksums can tell: the full
// check runs (its message names quick_check, as rows of problems or as
// SQLite's own error, depending on where the zeroed pages fall).
func TestHazard_SealedDatabaseDamagedAfterShutdown(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		damage     func(t *testing.T, path string)
	}{
		{"pages-zeroed-same-size-and-time", "quick_check", func(t *testing.T, path string) {
			info, err := os.Stat(path)
			require.NoError(t, err)
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			require.NoError(t, err)
			// Zero pages in the middle of the file (4 KiB pages).
			_, err = f.WriteAt(make([]byte, 16*4096), (info.Size()/2/4096)*4096)
			require.NoError(t, err)
			require.NoError(t, f.Close())
			require.NoError(t, os.Chtimes(path, info.ModTime(), info.ModTime()))
		}},
		{"truncated", "", func(t *testing.T, path string) {
			info, err := os.Stat(path)
			require.NoError(t, err)
			require.NoError(t, os.Truncate(path, (info.Size()/2/4096)*4096))
		}},
		{"emptied", "", func(t *testing.T, path string) {
			require.NoError(t, os.Truncate(path, 0))
		}},
		{"replaced-by-another-store", "", func(t *testing.T, path string) {
			other := t.TempDir()
			o, err := Open(other, Options{})
			require.NoError(t, err)
			require.NoError(t, o.Close())
			require.NoError(t, os.Rename(filepath.Join(other, FileName), path))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := sealedStore(t, dir)
			tc.damage(t, path)
			s, logs, err := openLogged(dir)
			if err == nil {
				s.Close()
			}
			require.Error(t, err, "the damaged database is refused at open")
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, logs, "quick_check skipped")
		})
	}
}

// TestHazard_DamagedIndexFoundByTheCounts: an index that lost an entry
// of a row older than the sample of newest plans is found at open by the
// index counts alone: with no seal (the table scanned against each index)
// and with a seal (the clean shutdown sealed the file that way, as after
// damage while the server ran: each index counted against the table's
// first). count(*) did not do it: SQLite counts rows its own way whatever
// INDEXED BY says, so the counts are sums over the named index.
func TestHazard_DamagedIndexFoundByTheCounts(t *testing.T) {
	for _, sealed := range []bool{false, true} {
		t.Run(fmt.Sprint("sealed=", sealed), func(t *testing.T) {
			dir := t.TempDir()
			path := sealedStore(t, dir)
			// The row is older than the sample of newest plans the check
			// looks up.
			hideFromIndex(t, path, "resources_subject", `CREATE INDEX resources_subject ON resources(subject)`,
				`INSERT INTO resources(rid, type, id, version, updated, deleted, owner, subject, dtype) VALUES (-5, 'EpisodeOfCare', 'old', 1, 0, 0, 'LA001', '9449306761', 'Flag')`)
			requireRefusedAsDamaged(t, dir, path, sealed, "resources_subject")
		})
	}
}

// TestHazard_IndexDamagedWhileRunningFoundAtShutdown: the shutdown counts
// the indexes for the seal, so an index that lost an entry while the store
// ran (here through another connection, as a faulty tool would) is found
// at the close: the close says so, leaves no seal, and the next start
// checks the file in full and refuses it. A start on the seal of a
// shutdown that did not count (its counts stopped at their time limit)
// counts them itself (TestHazard_DamagedIndexFoundByTheCounts).
func TestHazard_IndexDamagedWhileRunningFoundAtShutdown(t *testing.T) {
	dir := t.TempDir()
	path := sealedStore(t, dir)
	var logs bytes.Buffer
	s, err := Open(dir, Options{Log: slog.New(slog.NewJSONHandler(&logs, nil))})
	require.NoError(t, err)
	require.Contains(t, logs.String(), "not counted again")
	hideFromIndex(t, path, "resources_subject", `CREATE INDEX resources_subject ON resources(subject)`,
		`INSERT INTO resources(rid, type, id, version, updated, deleted, owner, subject, dtype) VALUES (-5, 'EpisodeOfCare', 'old', 1, 0, 0, 'LA001', '9449306761', 'Flag')`)
	err = s.Close()
	require.Error(t, err, "the close reports the damage it found")
	assert.Contains(t, err.Error(), "resources_subject")
	assert.Contains(t, logs.String(), "the index counts disagree at shutdown")
	assert.NoFileExists(t, path+sealSuffix, "a damaged database is not sealed")

	s, openLogs, err := openLogged(dir)
	if err == nil {
		s.Close()
	}
	require.Error(t, err)
	assert.Contains(t, err.Error(), "damaged")
	assert.Contains(t, err.Error(), "resources_subject")
	assert.NotContains(t, openLogs, "quick_check skipped")
}

// TestSealedCountsDoNotCoverAMigration: a seal that says its shutdown
// counted the indexes vouches for the file as it was; a start that then
// migrates the schema (an upgrade) counts them itself.
func TestSealedCountsDoNotCoverAMigration(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, layoutDB(t, dir, schemaVersion-1).Close())
	path := filepath.Join(dir, FileName)
	sealMu.Lock()
	require.NoError(t, writeSeal(path, true))
	sealMu.Unlock()
	s, logs, err := openLogged(dir)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	assert.Contains(t, logs, "quick_check skipped", "the file is as it was sealed")
	assert.NotContains(t, logs, "not counted again")
	assert.Contains(t, logs, `"counted_at_shutdown":false`)
}

// dbExec runs statements on the database file at path, outside any Store.
func dbExec(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	require.NoError(t, err)
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, q := range stmts {
		_, err := db.Exec(q)
		require.NoError(t, err, q)
	}
}

// hideFromIndex damages index (whose CREATE statement is def): it takes no
// rows while insert runs, then is whole again, so the new row is missing
// from it, which quick_check does not see.
func hideFromIndex(t *testing.T, path, index, def, insert string) {
	t.Helper()
	dbExec(t, path, `PRAGMA writable_schema = ON`, `UPDATE sqlite_master SET sql = '`+def+` WHERE 0' WHERE name = '`+index+`'`)
	dbExec(t, path, insert)
	dbExec(t, path, `PRAGMA writable_schema = ON`, `UPDATE sqlite_master SET sql = '`+def+`' WHERE name = '`+index+`'`)
}

// requireRefusedAsDamaged seals the damaged file as a clean shutdown whose
// index counts did not finish would (if sealed) and checks the open is
// refused, naming index, and whether quick_check was skipped.
func requireRefusedAsDamaged(t *testing.T, dir, path string, sealed bool, index string) {
	t.Helper()
	require.NoError(t, os.Remove(path+sealSuffix))
	if sealed {
		sealMu.Lock()
		require.NoError(t, writeSeal(path, false))
		sealMu.Unlock()
	}
	s, logs, err := openLogged(dir)
	if err == nil {
		s.Close()
	}
	require.Error(t, err)
	assert.Equal(t, sealed, strings.Contains(logs, "quick_check skipped"), logs)
	assert.Contains(t, err.Error(), "damaged")
	assert.Contains(t, err.Error(), index)
}
