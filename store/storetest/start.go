package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
)

// testSearchStart: a record's Start is kept (its derived record's too) and
// the sorts by Start order by it, ties by id, records with none last in
// both directions, with keyset paging through ties and into the records
// with none.
func testSearchStart(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := context.Background()
	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
	starts := map[string]time.Time{
		"a": day(2024, 3, 5), "b": day(2024, 1, 1), "c": day(2024, 3, 5), // b and a/c tie is broken by id
		"d": time.Date(2024, 3, 5, 9, 30, 0, 250e6, time.UTC), "e": {}, "f": {}, "g": day(1066, 10, 14),
	}
	for id, st := range starts {
		r := at(id, 1, "LA1", 1)
		r.Start = st
		put(t, s, r)
	}
	other := at("x", 1, "LA2", 1) // another owner's, earliest of all
	other.Start = day(1000, 1, 1)
	put(t, s, other)
	put(t, s, store.Record{Type: "Organization", ID: "o1", Version: 1, Updated: t0, Owner: "LA1", Body: []byte(`{"resourceType":"Organization"}`)})

	got, err := s.Get(ctx, "Flag", "d")
	require.NoError(t, err)
	assert.True(t, starts["d"].Equal(got.Start), "a derived record has its record's start, to the millisecond: %v", got.Start)
	got, err = s.Get(ctx, "EpisodeOfCare", "g")
	require.NoError(t, err)
	assert.True(t, starts["g"].Equal(got.Start), "a start outside Unix nanoseconds' range is kept: %v", got.Start)
	got, err = s.Get(ctx, "EpisodeOfCare", "e")
	require.NoError(t, err)
	assert.True(t, got.Start.IsZero())

	asc := []string{"g", "b", "a", "c", "d", "e", "f"}
	desc := []string{"d", "c", "a", "b", "g", "f", "e"}
	for _, typ := range []string{"EpisodeOfCare", "Flag"} {
		q := store.Query{Type: typ, Owner: "LA1", Sort: store.SortStart, Limit: 50}
		recs, _, err := s.Search(ctx, q)
		require.NoError(t, err)
		assert.Equal(t, asc, ids(recs), typ)
		for _, limit := range []int{1, 2, 3} {
			assert.Equal(t, asc, pages(t, s, q, limit, nil), "%s: pages of %d", typ, limit)
		}
		q.Sort = store.SortStartDesc
		recs, _, err = s.Search(ctx, q)
		require.NoError(t, err)
		assert.Equal(t, desc, ids(recs), typ)
		for _, limit := range []int{1, 2, 3} {
			assert.Equal(t, desc, pages(t, s, q, limit, nil), "%s: pages of %d", typ, limit)
		}
	}
	bySubject := store.Query{Type: "Flag", Subject: "9449306753", Sort: store.SortStart, Limit: 50}
	recs, _, err := s.Search(ctx, bySubject)
	require.NoError(t, err)
	assert.Equal(t, append([]string{"x"}, asc...), ids(recs), "a patient's Flags across owners")
	withIDs := store.Query{Type: "EpisodeOfCare", Owner: "LA1", IDs: []string{"f", "a", "e", "d"}, Sort: store.SortStartDesc}
	assert.Equal(t, []string{"d", "a", "f", "e"}, pages(t, s, withIDs, 1, nil), "ids and the position together")
	_, total, err := s.Search(ctx, store.Query{Type: "EpisodeOfCare", Owner: "LA1", Sort: store.SortStart, Limit: 2, Count: true})
	require.NoError(t, err)
	assert.Equal(t, 7, total, "records with no start are counted")
}
