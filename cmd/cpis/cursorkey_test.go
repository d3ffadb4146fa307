package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The paging-cursor key is made once in the data directory, readable by the
// server's user only, and kept across starts (links stay valid); a key file
// of the wrong size stops start-up, as the security-log key does.
func TestCursorKeyInDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	k1, err := cursorKey(dir)
	require.NoError(t, err)
	require.Len(t, k1, 32)
	fi, err := os.Stat(filepath.Join(dir, "cursor.key"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	k2, err := cursorKey(dir)
	require.NoError(t, err)
	assert.Equal(t, k1, k2, "the same key on the next start")
	hash, err := subjectKey(dir)
	require.NoError(t, err)
	assert.NotEqual(t, k1, hash, "its own key, not the security-log one")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "cursor.key"), []byte("short"), 0o600))
	_, err = cursorKey(dir)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "CPIS_DATA_DIR")
	assert.Contains(t, err.Error(), "paging-cursor key")
}
