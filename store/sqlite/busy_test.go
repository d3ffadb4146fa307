package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
)

// TestHazard_SweepMeetsAnotherProcessesWriteLock: a retention sweep run
// where another process (here a raw connection, as a tool or a second
// server would) holds SQLite's write lock past the busy timeout fails with
// a message that says so, and deletes nothing: the expired plan, its Flag
// and its access records are all still there, and the next sweep purges
// them.
func TestHazard_SweepMeetsAnotherProcessesWriteLock(t *testing.T) {
	dir := t.TempDir()
	st, err := Open(dir, Options{CheckTimeout: -1, BusyTimeout: 300 * time.Millisecond})
	require.NoError(t, err)
	defer st.Close()
	ctx := context.Background()
	now := time.Now().UTC()
	require.NoError(t, st.Commit(ctx, []store.Write{{Record: store.Record{
		Type: "EpisodeOfCare", ID: "old", Version: 1, Updated: now, Owner: "LA001", Subject: "9449306753", End: now.AddDate(0, 0, -400),
		Body: []byte(`{}`), Derived: &store.Derived{Type: "Flag", Body: []byte(`{}`)},
	}}}))
	for i := 0; i < 3; i++ {
		require.NoError(t, st.Audit(ctx, []store.AuditRecord{{ID: "a" + string(rune('0'+i)), Recorded: now.AddDate(0, 0, -390), Subject: "9449306753",
			Agent: "u", Notify: true, Owners: []string{"LA001"}, Body: []byte(`{}`)}}))
	}
	other, err := sql.Open("sqlite", "file:"+filepath.Join(dir, FileName)+"?mode=rw")
	require.NoError(t, err)
	defer other.Close()
	conn, err := other.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.ExecContext(ctx, `BEGIN IMMEDIATE`)
	require.NoError(t, err)

	stats, err := st.Purge(ctx, now.AddDate(0, 0, -365))
	require.Error(t, err, "the sweep cannot get the write lock")
	assert.ErrorIs(t, err, store.ErrUnavailable)
	assert.Contains(t, err.Error(), "another process held the database's write lock for longer than 300ms")
	assert.Contains(t, err.Error(), "without deleting anything more")
	assert.Equal(t, store.PurgeStats{}, stats)

	_, err = conn.ExecContext(ctx, `ROLLBACK`)
	require.NoError(t, err)
	for _, typ := range []string{"EpisodeOfCare", "Flag"} {
		_, err := st.Get(ctx, typ, "old")
		assert.NoError(t, err, "%s is still there", typ)
	}
	recs, err := st.AuditBySubject(ctx, "9449306753", time.Time{}, 100)
	require.NoError(t, err)
	assert.Len(t, recs, 3, "the access records are still there")

	stats, err = st.Purge(ctx, now.AddDate(0, 0, -365))
	require.NoError(t, err, "the next sweep carries on")
	assert.Equal(t, 3, stats.Audit)
	assert.GreaterOrEqual(t, stats.Records, 1)
}
