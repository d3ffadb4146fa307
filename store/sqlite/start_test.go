package sqlite

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
)

// TestSortByStartUsesIndexes: an LA's records by period start are read in
// the order of resources_owner_start, both parts (with a start, from the
// position, and with none), without sorting the authority's records; a
// patient's Flags keep resources_subject.
func TestSortByStartUsesIndexes(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	require.NoError(t, err)
	defer s.Close()
	since := time.Now()
	for name, c := range map[string]struct {
		q     store.Query
		index string
	}{
		"la-by-date":              {store.Query{Type: "EpisodeOfCare", Owner: "LA001", RetainedSince: since, Sort: store.SortStart, Limit: 50}, "resources_owner_start"},
		"la-by-date-desc-paged":   {store.Query{Type: "Flag", Owner: "LA001", RetainedSince: since, Sort: store.SortStartDesc, Limit: 50, After: "x", AfterStart: since}, "resources_owner_start"},
		"la-by-date-no-start":     {store.Query{Type: "EpisodeOfCare", Owner: "LA001", RetainedSince: since, Sort: store.SortStart, Limit: 50, After: "x"}, "resources_owner_start"},
		"flags-by-nhs-by-date":    {store.Query{Type: "Flag", Subject: "9449306753", RetainedSince: since, Sort: store.SortStartDesc, Limit: 50}, "resources_subject"},
		"plans-by-nhs-in-la-date": {store.Query{Type: "EpisodeOfCare", Subject: "9449306753", Owner: "LA001", RetainedSince: since, Sort: store.SortStart, Limit: 50}, "resources_subject"},
	} {
		t.Run(name, func(t *testing.T) {
			cond, args := searchWhere(c.q)
			q, args := pageQuery(c.q, cond, args)
			plan := explain(t, s, q, args...)
			t.Log(plan)
			assert.Contains(t, plan, c.index, plan)
			assert.NotContains(t, plan, "SCAN resources", plan)
			if c.index == "resources_owner_start" {
				assert.NotContains(t, plan, "USE TEMP B-TREE FOR ORDER BY\n", "each part is read in index order")
			}
		})
	}
}

// TestMigrateBackfillsPeriodStart writes a database in layout 11 (before
// the period start was kept), with plans whose period.start is a year, a
// month, a day and a dateTime with an offset, earlier versions in history,
// an Organization and a tombstone, and opens it: every stored version has
// its start, computed as the server computes it for a new write, and the
// sort by start orders the old plans as new ones.
func TestMigrateBackfillsPeriodStart(t *testing.T) {
	dir := t.TempDir()
	db := layoutDB(t, dir, 11)
	cols11 := `type, id, version, updated, deleted, owner, subject, plan_end, ends, dtype, dends, body, dbody`
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	body := func(id, start string) []byte {
		return []byte(fmt.Sprintf(`{"resourceType":"EpisodeOfCare","id":%q,"period":{"start":%q}}`, id, start))
	}
	ins := func(table, typ, id string, v int64, deleted bool, b []byte) {
		var dtype any
		if typ == "EpisodeOfCare" {
			dtype = "Flag"
		}
		_, err := db.Exec(`INSERT INTO `+table+`(`+cols11+`) VALUES (?, ?, ?, ?, ?, 'LA001', '9449306753', NULL, NULL, ?, NULL, ?, ?)`,
			typ, id, v, t0.Add(time.Duration(v)*time.Minute).UnixNano(), deleted, dtype, b, []byte(`{"resourceType":"Flag"}`))
		require.NoError(t, err)
	}
	// 2024 (London midnight = UTC in winter), 2024-06 (BST: 23:00 the day
	// before in UTC), 2024-06-01 (the same instant as 2024-06), a dateTime
	// with an offset (earlier than 2024-06 in UTC), and an older version
	// of p1 in history with another start.
	ins("history", "EpisodeOfCare", "p1", 1, false, body("p1", "2023-02-01"))
	ins("resources", "EpisodeOfCare", "p1", 2, false, body("p1", "2024"))
	ins("resources", "EpisodeOfCare", "p2", 1, false, body("p2", "2024-06"))
	ins("resources", "EpisodeOfCare", "p3", 1, false, body("p3", "2024-06-01"))
	ins("resources", "EpisodeOfCare", "p4", 1, false, body("p4", "2024-05-31T22:30:00-01:00"))
	ins("resources", "EpisodeOfCare", "p5", 2, true, nil) // a tombstone
	ins("resources", "Organization", "o1", 1, false, []byte(`{"resourceType":"Organization","id":"o1"}`))
	require.NoError(t, db.Close())

	s, err := Open(dir, Options{})
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	want := map[string]time.Time{
		"p1": time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
		"p2": time.Date(2024, 5, 31, 23, 0, 0, 0, time.UTC),
		"p3": time.Date(2024, 5, 31, 23, 0, 0, 0, time.UTC),
		"p4": time.Date(2024, 5, 31, 23, 30, 0, 0, time.UTC),
	}
	for id, st := range want {
		rec, err := s.Get(ctx, "Flag", id)
		require.NoError(t, err)
		assert.True(t, st.Equal(rec.Start), "%s: %v, want %v", id, rec.Start, st)
		plan, err := s.Get(ctx, "EpisodeOfCare", id)
		require.NoError(t, err)
		assert.True(t, store.PeriodStart(plan.Body).Equal(rec.Start), "%s: as a new write computes it", id)
	}
	v1, err := s.GetVersion(ctx, "EpisodeOfCare", "p1", 1)
	require.NoError(t, err)
	assert.True(t, time.Date(2023, 2, 1, 0, 0, 0, 0, time.UTC).Equal(v1.Start), "history is backfilled too: %v", v1.Start)
	org, err := s.Get(ctx, "Organization", "o1")
	require.NoError(t, err)
	assert.True(t, org.Start.IsZero(), "an Organization has no period")

	for _, c := range []struct {
		sort store.Sort
		want []string
	}{
		{store.SortStart, []string{"p1", "p2", "p3", "p4"}},
		{store.SortStartDesc, []string{"p4", "p3", "p2", "p1"}},
	} {
		recs, _, err := s.Search(ctx, store.Query{Type: "Flag", Owner: "LA001", Sort: c.sort, Limit: 10})
		require.NoError(t, err)
		got := []string{}
		for _, r := range recs {
			got = append(got, r.ID)
		}
		assert.Equal(t, c.want, got, "sorted by start, ties by id")
	}

	// The new layout is what an older server refuses (its schema check).
	var v int
	require.NoError(t, s.r.QueryRow(`PRAGMA user_version`).Scan(&v))
	assert.Equal(t, schemaVersion, v)
}
