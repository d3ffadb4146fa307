package handlers

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
)

// TestHazard_PagePositionReadUnderAnotherSort: a paging position is only
// ever read under the sort it was made for. Read under another, a time
// would be taken for an id (or an id for a time) and the pages would skip
// or repeat records, so it is refused.
func TestHazard_PagePositionReadUnderAnotherSort(t *testing.T) {
	at := time.Date(2026, 6, 15, 10, 0, 0, 123456789, time.UTC)
	last := store.HistoryPosition{Updated: at, ID: "p1"}
	for _, made := range []store.Sort{store.SortID, store.SortUpdated, store.SortUpdatedDesc} {
		pos := position(made, last)
		for _, read := range []store.Sort{store.SortID, store.SortUpdated, store.SortUpdatedDesc} {
			id, updated, err := readPosition(read, pos)
			if made != read {
				assert.Error(t, err, "made for %d, read under %d", made, read)
				continue
			}
			require.NoError(t, err)
			assert.Equal(t, "p1", id)
			if made != store.SortID {
				assert.True(t, at.Equal(updated), "the time to the nanosecond")
			}
		}
	}
	for _, bad := range []string{"u|x|p1", "u|1|", "d|1", "q|1|p1"} {
		_, _, err := readPosition(store.SortUpdatedDesc, bad)
		assert.Error(t, err, bad)
	}
	p, ok := readHistoryCursor(historyCursor(store.HistoryPosition{Updated: at, ID: "a|b", Version: 7}))
	require.True(t, ok)
	assert.Equal(t, store.HistoryPosition{Updated: at, ID: "a|b", Version: 7}, p)
}
