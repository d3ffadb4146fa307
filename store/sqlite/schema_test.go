package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
)

// TestMigrateFromTheFirstLayout writes a database in layout 1 (history
// holding every version, stored inactive Flag variants) and opens it: the
// data reads the same in layout 2.
func TestMigrateFromTheFirstLayout(t *testing.T) {
	dir := t.TempDir()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, FileName))
	require.NoError(t, err)
	for _, st := range append(migrations[0], `PRAGMA user_version = 1`) {
		_, err := db.Exec(st)
		require.NoError(t, err)
	}
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	ends := t0.Add(90 * 24 * time.Hour)
	ins := func(table string, v int64, flag string) {
		_, err := db.Exec(`INSERT INTO `+table+`(type, id, version, updated, deleted, owner, subject, plan_end, body, ended, ends, dtype, dbody, dended, dends)
			VALUES ('EpisodeOfCare', 'p1', ?, ?, 0, 'LA001', '9449306753', ?, ?, NULL, NULL, 'Flag', ?, ?, ?)`,
			v, t0.Add(time.Duration(v)*time.Hour).UnixNano(), ends.UnixNano(), []byte(`{"v":`+string(rune('0'+v))+`}`), []byte(flag), []byte(`{"old":"inactive"}`), ends.UnixNano())
		require.NoError(t, err)
	}
	ins("history", 1, `{"flag":1}`)
	ins("history", 2, `{"flag":2}`)
	ins("resources", 2, `{"flag":2}`)
	_, err = db.Exec(`INSERT INTO keys(type, value, id) VALUES ('EpisodeOfCare', 's|v', 'p1')`)
	require.NoError(t, err)
	for i, notify := range []bool{true, false} {
		_, err = db.Exec(`INSERT INTO audit(seq, id, recorded, subject, agent, notify, body) VALUES (?, ?, ?, '9449306753', 'u', ?, '{}')`,
			i+1, "e"+string(rune('1'+i)), t0.UnixNano(), notify)
		require.NoError(t, err)
		for _, o := range []string{"LA002", "LA001"} {
			_, err = db.Exec(`INSERT INTO audit_owner(owner, seq) VALUES (?, ?)`, o, i+1)
			require.NoError(t, err)
		}
	}
	// Numbers up to 50 were given out before (their records since purged).
	_, err = db.Exec(`UPDATE sqlite_sequence SET seq = 50 WHERE name = 'audit'`)
	require.NoError(t, err)
	require.NoError(t, db.Close())

	s, err := Open(dir, Options{})
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	f, err := s.Get(ctx, "Flag", "p1")
	require.NoError(t, err)
	assert.Equal(t, int64(2), f.Version)
	assert.JSONEq(t, `{"flag":2}`, string(f.Body))
	assert.True(t, f.Ends.Equal(ends))
	hist, err := s.History(ctx, "EpisodeOfCare", "p1")
	require.NoError(t, err)
	require.Len(t, hist, 2, "each version once")
	assert.Equal(t, []int64{2, 1}, []int64{hist[0].Version, hist[1].Version})
	v1, err := s.GetVersion(ctx, "Flag", "p1", 1)
	require.NoError(t, err)
	assert.JSONEq(t, `{"flag":1}`, string(v1.Body))
	recs, _, err := s.Search(ctx, store.Query{Type: "EpisodeOfCare", Key: "LA001|s|v", Limit: 1})
	require.NoError(t, err)
	assert.Len(t, recs, 1, "identifier keys are scoped by their record's owner (layout 3)")
	acc, err := s.AuditBySubject(ctx, "9449306753", time.Time{}, 10)
	require.NoError(t, err)
	require.Len(t, acc, 1)
	assert.Equal(t, []string{"LA001", "LA002"}, acc[0].Owners, "owners carried by the record (layout 3)")
	n, err := s.AuditFeedTotal(ctx, "LA001", time.Time{})
	require.NoError(t, err)
	assert.Equal(t, 1, n, "the feed index holds notifying records only")
	feed, _, err := s.AuditFeed(ctx, "LA002", time.Time{}, "", 10)
	require.NoError(t, err)
	assert.Len(t, feed, 1)

	require.NoError(t, s.Audit(ctx, []store.AuditRecord{{ID: "e3", Recorded: t0, Subject: "9449306753", Agent: "u", Notify: true, Owners: []string{"LA001"}, Body: []byte(`{}`)}}))
	page, cursor, err := s.AuditFeed(ctx, "LA001", time.Time{}, "s1", 10)
	require.NoError(t, err)
	require.Len(t, page, 1)
	assert.Equal(t, "s51", cursor, "a new access never reuses a number a feed cursor may hold")

	// And it takes writes in the new layout.
	next := store.Record{Type: "EpisodeOfCare", ID: "p1", Version: 3, Updated: t0.Add(5 * time.Hour), Owner: "LA001", Subject: "9449306753", Body: []byte(`{}`)}
	require.NoError(t, s.Commit(ctx, []store.Write{{Record: next, Expect: 2}}))
	hist, err = s.History(ctx, "EpisodeOfCare", "p1")
	require.NoError(t, err)
	assert.Len(t, hist, 3)
}

// TestMigrateAddsAccessRecordViews opens a layout-4 database: its access
// records read as before, with no views, and new ones keep theirs.
func TestMigrateAddsAccessRecordViews(t *testing.T) {
	dir := t.TempDir()
	db := layoutDB(t, dir, 4)
	var err error
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	_, err = db.Exec(`INSERT INTO audit(id, recorded, subject, agent, notify, owners, body) VALUES ('e1', ?, '9449306753', 'u', 1, 'LA001 LA002', '{"id":"e1"}')`, t0.UnixNano())
	require.NoError(t, err)
	_, err = db.Exec(`INSERT INTO audit_owner(owner, seq, recorded) VALUES ('LA001', 1, ?), ('LA002', 1, ?)`, t0.UnixNano(), t0.UnixNano())
	require.NoError(t, err)
	require.NoError(t, db.Close())

	s, err := Open(dir, Options{})
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	views := map[string][]byte{"LA001": []byte(`{"id":"e2","v":1}`), "LA002": []byte(`{"id":"e2","v":2}`)}
	require.NoError(t, s.Audit(ctx, []store.AuditRecord{{ID: "e2", Recorded: t0.Add(time.Minute), Subject: "9449306753", Agent: "u2",
		Notify: true, Owners: []string{"LA001", "LA002"}, Body: []byte(`{"id":"e2"}`), Views: views}}))
	feed, _, err := s.AuditFeed(ctx, "LA002", time.Time{}, "", 10)
	require.NoError(t, err)
	require.Len(t, feed, 2)
	assert.Equal(t, "e1", feed[0].ID)
	assert.Nil(t, feed[0].Views, "a record from before has no views")
	assert.Equal(t, []string{"LA001", "LA002"}, feed[0].Owners)
	assert.JSONEq(t, `{"id":"e2","v":2}`, string(feed[1].Views["LA002"]))
	assert.JSONEq(t, `{"id":"e2","v":1}`, string(feed[1].Views["LA001"]))
}

// layoutDB makes a database in dir in layout v, as that release wrote it
// (its migrations' statements; the steps done in Go have no records to
// work on), for a test to fill before this release opens it.
func layoutDB(t *testing.T, dir string, v int) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, FileName))
	require.NoError(t, err)
	for l := 0; l < v; l++ {
		for _, st := range migrations[l] {
			if strings.HasPrefix(st, goStepPrefix) {
				continue
			}
			_, err := db.Exec(st)
			require.NoError(t, err, "layout %d", l+1)
		}
	}
	_, err = db.Exec(fmt.Sprintf(`PRAGMA user_version = %d`, v))
	require.NoError(t, err)
	return db
}
