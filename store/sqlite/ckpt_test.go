package sqlite

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
)

// TestCheckpointsRunInTheBackground writes with the writer's automatic
// checkpoints off and checks the background checkpointer copies the log
// into the database file: the file grows with no checkpoint asked for.
func TestCheckpointsRunInTheBackground(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	require.NoError(t, err)
	defer s.Close()
	size := func() int64 {
		info, err := os.Stat(filepath.Join(dir, FileName))
		require.NoError(t, err)
		return info.Size()
	}
	before := size()
	ctx := context.Background()
	for i := 0; i < 200; i++ {
		body := make([]byte, 2000) // random, so compression does not shrink it
		_, _ = rand.Read(body)
		require.NoError(t, s.Audit(ctx, []store.AuditRecord{{ID: fmt.Sprint(i), Recorded: time.Now(), Subject: "9449306753", Agent: "u", Notify: true, Body: body}}))
	}
	assert.Eventually(t, func() bool { return size() > before+200*2000 }, 5*time.Second, 50*time.Millisecond,
		"the records reach the database file (%d bytes before)", before)
}

// TestHazard_CheckpointBehindAReaderSyncsTheDatabase: under load a reader
// is always on an earlier commit, so the background checkpoint cannot copy
// the log to its end, and SQLite then leaves the pages it copied unsynced;
// the log's restart had to sync them all while it held every write (150 to
// 200 ms every few seconds at national volume, the audited reads' p99).
// The checkpointer now syncs the database file after each turn that copied
// anything, away from the writer.
func TestHazard_CheckpointBehindAReaderSyncsTheDatabase(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	audit := func(from, n int) {
		for i := from; i < from+n; i++ {
			body := make([]byte, 2000)
			_, _ = rand.Read(body)
			require.NoError(t, s.Audit(ctx, []store.AuditRecord{{ID: fmt.Sprint(i), Recorded: time.Now(), Subject: "9449306753", Agent: "u", Notify: true, Body: body}}))
		}
	}
	audit(0, 50)
	// A reader on the commits so far.
	conn, err := s.r.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.ExecContext(ctx, `BEGIN`)
	require.NoError(t, err)
	defer conn.ExecContext(ctx, `ROLLBACK`)
	var n int
	require.NoError(t, conn.QueryRowContext(ctx, `SELECT count(*) FROM audit`).Scan(&n))
	require.Equal(t, 50, n)
	audit(50, 50)

	before := s.dbSyncs.Load()
	logged, copied := s.passiveCheckpoint()
	require.Greater(t, logged, copied, "the reader keeps the checkpoint from the log's end, where SQLite would sync")
	if copied > 0 {
		assert.Greater(t, s.dbSyncs.Load(), before, "the pages copied are synced")
	} else {
		// The background turn copied up to the reader already (and
		// synced, or this fails).
		assert.Positive(t, s.dbSyncs.Load())
	}
}
