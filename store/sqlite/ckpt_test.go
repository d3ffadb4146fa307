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
