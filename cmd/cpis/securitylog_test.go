package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Finding 7: the key of the NHS-number hash in the security log was used
// whatever its length. An empty log-hash.key (left by a crash between
// creating and writing it, or read by a second process while the first was
// still writing it) gave an unkeyed hash, and an NHS number can be found
// from an unkeyed SHA-256 by trying the billion valid numbers. Now a key
// file that is not 32 bytes stops start-up with a line naming
// CPIS_DATA_DIR, and processes creating the key at once all get the one key
// written.
func TestSecurityLogKeyIsNeverEmpty(t *testing.T) {
	t.Run("empty-file-refused", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "log-hash.key"), nil, 0o600))
		key, err := subjectKey(dir)
		require.Error(t, err, "an empty key file must not give an empty key (got %d bytes)", len(key))
		assert.Contains(t, err.Error(), "CPIS_DATA_DIR")
		assert.NotContains(t, err.Error(), "\n")
	})
	t.Run("serve-stops-on-a-short-key", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "log-hash.key"), []byte("short"), 0o600))
		var out bytes.Buffer
		// Bounded: before the fix the server started on the short key.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		err := run(ctx, []string{"serve"}, env(map[string]string{"CPIS_DATA_DIR": dir, "CPIS_ADDR": "127.0.0.1:0"}), &out)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "CPIS_DATA_DIR")
		var ce *configError
		assert.ErrorAs(t, err, &ce, "a configuration error (exit status 2)")
	})
	t.Run("concurrent-creators-share-one-key", func(t *testing.T) {
		for round := 0; round < 20; round++ {
			dir := t.TempDir()
			const n = 8
			keys := make([][]byte, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					keys[i], errs[i] = subjectKey(dir)
				}(i)
			}
			wg.Wait()
			for i := 0; i < n; i++ {
				require.NoError(t, errs[i])
				require.Len(t, keys[i], 32, "process %d got a key of %d bytes", i, len(keys[i]))
				require.Equal(t, keys[0], keys[i])
			}
		}
	})
}
