package sqlite

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
)

// TestChangesUseIndexes: the searches of what changed (a local authority's
// records by time, sorted by time, and its type-level history) seek the
// indexes of migration 8, and the hot path, a Flag search by NHS number,
// keeps its own index even with a _lastUpdated bound and a sort.
func TestChangesUseIndexes(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	require.NoError(t, err)
	defer s.Close()
	since := time.Now()
	for name, c := range map[string]struct {
		q     store.Query
		index string
	}{
		"flags-by-nhs-number-last-updated": {store.Query{Type: "Flag", Subject: "9449306753", RetainedSince: since, UpdatedFrom: since, Limit: 50}, "resources_subject"},
		"flags-by-nhs-number-sorted":       {store.Query{Type: "Flag", Subject: "9449306753", RetainedSince: since, Sort: store.SortUpdatedDesc, Limit: 50}, "resources_subject"},
		"la-changed-since":                 {store.Query{Type: "EpisodeOfCare", Owner: "LA001", RetainedSince: since, UpdatedFrom: since, Sort: store.SortUpdated, Limit: 50, After: "x", AfterUpdated: since}, "resources_owner_updated"},
		"la-newest-first":                  {store.Query{Type: "EpisodeOfCare", Owner: "LA001", RetainedSince: since, Sort: store.SortUpdatedDesc, Limit: 50}, "resources_owner_updated"},
	} {
		t.Run(name, func(t *testing.T) {
			cond, args := searchWhere(c.q)
			cond, args, order := pageWhere(c.q, cond, args)
			plan := explain(t, s, `SELECT `+cols+` FROM resources WHERE `+cond+` ORDER BY `+order+` LIMIT 50`, args...)
			t.Log(plan)
			assert.Contains(t, plan, c.index, plan)
			assert.NotContains(t, plan, "SCAN resources", plan)
		})
	}
	t.Run("type-history", func(t *testing.T) {
		plan := explain(t, s, `SELECT `+cols+` FROM history WHERE owner = 'LA001' AND type = 'EpisodeOfCare' AND updated >= 5 ORDER BY updated DESC, id DESC, version DESC LIMIT 50`)
		assert.Contains(t, plan, "history_owner_updated", plan)
		assert.NotContains(t, plan, "TEMP B-TREE", plan)
		plan = explain(t, s, `SELECT `+cols+` FROM resources WHERE owner = 'LA001' AND type = 'EpisodeOfCare' AND updated >= 5 ORDER BY updated DESC, id DESC, version DESC LIMIT 50`)
		assert.Contains(t, plan, "resources_owner_updated", plan)
	})
}
