package sqlite

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
)

// TestGroupCommitIsolatesAFailedOperation queues many writes at once, one of
// which fails after writing: the others commit, and the failed one leaves
// nothing.
func TestGroupCommitIsolatesAFailedOperation(t *testing.T) {
	var batches []int
	var mu sync.Mutex
	s, err := Open(t.TempDir(), Options{BatchObserver: func(n int) { mu.Lock(); batches = append(batches, n); mu.Unlock() }})
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	boom := errors.New("boom")
	const n = 40
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = s.write(ctx, func(ctx context.Context, tx *writeTx) error {
				if _, err := tx.exec(ctx, sqlInsertAudit, fmt.Sprintf("e%02d", i), time.Now().UnixNano(), "9449306753", "u", true, "", []byte(`{}`)); err != nil {
					return err
				}
				if i == 17 {
					return boom // after its insert: the insert must not survive
				}
				return nil
			})
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if i == 17 {
			assert.ErrorIs(t, err, boom)
		} else {
			assert.NoError(t, err, "op %d", i)
		}
	}
	recs, err := s.AuditBySubject(ctx, "9449306753", time.Time{}, 1000)
	require.NoError(t, err)
	assert.Len(t, recs, n-1)
	for _, r := range recs {
		assert.NotEqual(t, "e17", r.ID)
	}
	mu.Lock()
	t.Logf("group commits of %v operations", batches)
	mu.Unlock()

	// A lone failing write returns its own error and writes nothing.
	err = s.Commit(ctx, []store.Write{{Record: store.Record{Type: "Flag", ID: "x", Version: 2, Updated: time.Now()}, Expect: 1}})
	assert.ErrorIs(t, err, store.ErrVersionConflict)
}
