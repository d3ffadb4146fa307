package observed_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
	"cpis/store/observed"
	"cpis/store/sqlite"
)

// TestWrapKeepsTheTypeHistory: the server wraps its store for metrics; the
// wrapped store must still read type-level histories (without it every
// GET [type]/_history of the running server was a 501), and time them.
func TestWrapKeepsTheTypeHistory(t *testing.T) {
	s, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	require.NoError(t, err)
	var ops []string
	w := observed.Wrap(s, func(op string, _ time.Duration, _ error) { ops = append(ops, op) })
	defer w.Close()
	ctx := context.Background()
	require.NoError(t, w.Commit(ctx, []store.Write{{Record: store.Record{Type: "Organization", ID: "o1", Version: 1, Updated: time.Now(), Owner: "LA001", Body: []byte(`{}`)}}}))
	th, ok := w.(store.TypeHistorian)
	require.True(t, ok, "the wrapped store reads type histories")
	recs, err := th.TypeHistory(ctx, store.HistoryQuery{Type: "Organization", Owner: "LA001", Limit: 10})
	require.NoError(t, err)
	require.Len(t, recs, 1)
	assert.Equal(t, "o1", recs[0].ID)
	assert.Equal(t, []string{"commit", "type_history"}, ops)
}
