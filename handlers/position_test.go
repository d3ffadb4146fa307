package handlers

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/handlers/registry"
	"cpis/store"
)

// TestHazard_PagePositionReadUnderAnotherSort: a paging position is only
// ever read under the sort it was made for. Read under another, a time
// would be taken for an id (or an id for a time) and the pages would skip
// or repeat records, so it is refused.
func TestHazard_PagePositionReadUnderAnotherSort(t *testing.T) {
	at := time.Date(2026, 6, 15, 10, 0, 0, 123456789, time.UTC)
	start := time.Date(2024, 3, 5, 0, 0, 0, 0, time.UTC)
	all := []store.Sort{store.SortID, store.SortUpdated, store.SortUpdatedDesc, store.SortStart, store.SortStartDesc}
	for _, page := range []registry.Page{
		{Last: store.HistoryPosition{Updated: at, ID: "p1"}, LastStart: start},
		{Last: store.HistoryPosition{Updated: at, ID: "p1"}}, // a record with no start
	} {
		for _, made := range all {
			pos := position(made, page)
			for _, read := range all {
				var q registry.Search
				err := readPosition(read, pos, &q)
				if made != read {
					assert.Error(t, err, "made for %d, read under %d", made, read)
					continue
				}
				require.NoError(t, err)
				assert.Equal(t, "p1", q.After)
				switch made {
				case store.SortUpdated, store.SortUpdatedDesc:
					assert.True(t, at.Equal(q.AfterUpdated), "the time to the nanosecond")
				case store.SortStart, store.SortStartDesc:
					assert.True(t, page.LastStart.Equal(q.AfterStart), "the start, or none")
					assert.True(t, q.AfterUpdated.IsZero())
				}
			}
		}
	}
	for _, bad := range []string{"u|x|p1", "u|1|", "d|1", "q|1|p1", "u|-|p1"} {
		var q registry.Search
		assert.Error(t, readPosition(store.SortUpdatedDesc, bad, &q), bad)
	}
	for _, bad := range []string{"s|x|p1", "s|1|", "s|-|", "r|1|p1"} {
		var q registry.Search
		assert.Error(t, readPosition(store.SortStart, bad, &q), bad)
	}
	p, ok := readHistoryCursor(historyCursor(store.HistoryPosition{Updated: at, ID: "a|b", Version: 7}))
	require.True(t, ok)
	assert.Equal(t, store.HistoryPosition{Updated: at, ID: "a|b", Version: 7}, p)
}
