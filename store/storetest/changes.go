package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
)

// at is a plan written at t0 plus the given seconds, starting that many
// days after t0.
func at(id string, v int64, owner string, secs int) store.Record {
	r := withFlag(plan(id, v, "9449306753", owner), "active")
	r.Updated = t0.Add(time.Duration(secs) * time.Second)
	r.Start = store.StartAt(t0.AddDate(0, 0, secs))
	return r
}

// pages follows a search page by page (limit per page) and returns the ids
// in the order served.
func pages(t *testing.T, s store.Store, q store.Query, limit int, between func()) []string {
	t.Helper()
	var out []string
	q.Limit = limit
	for n := 0; n < 1000; n++ {
		recs, _, err := s.Search(context.Background(), q)
		require.NoError(t, err)
		for _, r := range recs {
			out = append(out, r.ID)
		}
		if len(recs) < limit {
			return out
		}
		last := recs[len(recs)-1]
		q.After, q.AfterUpdated, q.AfterStart = last.ID, last.Updated, last.Start
		if between != nil {
			between()
		}
	}
	t.Fatal("paging did not end")
	return nil
}

// testSearchUpdated: the _lastUpdated bounds (from inclusive, to exclusive)
// and the sorts by Updated, with keyset paging through ties.
func testSearchUpdated(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := context.Background()
	// c and d share a time: the id breaks the tie.
	for _, r := range []store.Record{at("a", 1, "LA1", 30), at("b", 1, "LA1", 10), at("c", 1, "LA1", 20), at("d", 1, "LA1", 20), at("x", 1, "LA2", 15)} {
		put(t, s, r)
	}
	// Updating b moves it to the end of the order by Updated.
	put(t, s, at("b", 2, "LA1", 40))
	q := func(q store.Query) []string {
		t.Helper()
		if q.Limit == 0 {
			q.Limit = 50
		}
		recs, _, err := s.Search(ctx, q)
		require.NoError(t, err)
		return ids(recs)
	}
	own := store.Query{Type: "EpisodeOfCare", Owner: "LA1"}
	from := own
	from.UpdatedFrom = t0.Add(20 * time.Second)
	assert.Equal(t, []string{"a", "b", "c", "d"}, q(from), "from is inclusive; b's current version counts, not its first")
	to := own
	to.UpdatedTo = t0.Add(30 * time.Second)
	assert.Equal(t, []string{"c", "d"}, q(to), "to is exclusive")
	both := from
	both.UpdatedTo = t0.Add(21 * time.Second)
	both.Type = "Flag"
	assert.Equal(t, []string{"c", "d"}, q(both), "a derived type is searched by its record's time")
	_, total, err := s.Search(ctx, store.Query{Type: "EpisodeOfCare", Owner: "LA1", UpdatedFrom: t0.Add(25 * time.Second), Count: true})
	require.NoError(t, err)
	assert.Equal(t, 2, total, "the count applies the bounds")

	asc := own
	asc.Sort = store.SortUpdated
	assert.Equal(t, []string{"c", "d", "a", "b"}, q(asc))
	assert.Equal(t, []string{"c", "d", "a", "b"}, pages(t, s, asc, 1, nil), "paging one by one through a tie")
	desc := own
	desc.Sort = store.SortUpdatedDesc
	assert.Equal(t, []string{"b", "a", "d", "c"}, q(desc))
	assert.Equal(t, []string{"b", "a", "d", "c"}, pages(t, s, desc, 1, nil))
	assert.Equal(t, []string{"a", "b", "c", "d"}, pages(t, s, own, 3, nil), "the default order is still by id")
	withSubject := asc
	withSubject.Subject = "9449306753"
	withSubject.Owner = ""
	withSubject.Type = "Flag"
	assert.Equal(t, []string{"x", "c", "d", "a", "b"}, q(withSubject))
}

// testSortedPagingWhileWriting: records that do not change while a search
// is paged (every order, pages of 3) are served exactly once each, while
// other records are created and updated between the pages.
func testSortedPagingWhileWriting(t *testing.T, h Harness) {
	for _, sort := range []store.Sort{store.SortID, store.SortUpdated, store.SortUpdatedDesc, store.SortStart, store.SortStartDesc} {
		t.Run(fmt.Sprint(sort), func(t *testing.T) {
			s := open(t, h)
			stable := map[string]bool{}
			for i := 0; i < 20; i++ {
				id := fmt.Sprintf("s%02d", i)
				r := at(id, 1, "LA1", i%7) // ties on purpose
				if i%6 == 0 {
					r.Start = time.Time{} // and records with no start, which come last
				}
				put(t, s, r)
				stable[id] = true
			}
			for i := 0; i < 5; i++ {
				put(t, s, at(fmt.Sprintf("m%02d", i), 1, "LA1", i))
			}
			var (
				wg   sync.WaitGroup
				mu   sync.Mutex
				tick = 100
				v    = map[string]int64{}
			)
			between := func() {
				// Writes by other callers between pages: new records at
				// every place in the orders, and updates of the m records.
				var errs [3]error
				wg.Add(3)
				mu.Lock()
				tick++
				n := tick
				mu.Unlock()
				go func() {
					defer wg.Done()
					errs[0] = s.Commit(context.Background(), []store.Write{{Record: at(fmt.Sprintf("n%03d", n), 1, "LA1", n%9)}})
				}()
				go func() {
					defer wg.Done()
					id := fmt.Sprintf("m%02d", n%5)
					mu.Lock()
					v[id]++
					next := v[id] + 1
					mu.Unlock()
					errs[1] = s.Commit(context.Background(), []store.Write{{Record: at(id, next, "LA1", n), Expect: next - 1}})
				}()
				go func() {
					defer wg.Done()
					errs[2] = s.Commit(context.Background(), []store.Write{{Record: at(fmt.Sprintf("o%03d", n), 1, "LA2", n%9)}})
				}()
				wg.Wait()
				for _, err := range errs {
					require.NoError(t, err)
				}
			}
			got := pages(t, s, store.Query{Type: "Flag", Owner: "LA1", Sort: sort}, 3, between)
			seen := map[string]int{}
			for _, id := range got {
				seen[id]++
				assert.NotEqual(t, 'o', rune(id[0]), "another owner's record")
			}
			for id := range stable {
				assert.Equal(t, 1, seen[id], "%s: a record not changed during paging is served exactly once", id)
			}
			for id, n := range seen {
				if id[0] == 'n' || id[0] == 'm' {
					// Changed during paging: never served twice in the
					// id order and the newest-first orders (a change
					// moves a record later in time and in start).
					if sort != store.SortUpdated && sort != store.SortStart {
						assert.LessOrEqual(t, n, 1, id)
					}
				}
			}
		})
	}
}

// testTypeHistory: the versions of one owner's records of a type, newest
// first, tombstones included, bounded by since/before and keyset paged.
func testTypeHistory(t *testing.T, h Harness) {
	s := open(t, h)
	th, ok := s.(store.TypeHistorian)
	require.True(t, ok, "the backend implements store.TypeHistorian")
	ctx := context.Background()
	put(t, s, at("p1", 1, "LA1", 10))
	put(t, s, at("p2", 1, "LA1", 20))
	put(t, s, at("p1", 2, "LA1", 30))
	put(t, s, at("q1", 1, "LA2", 35)) // another authority's
	del := tombstone(at("p2", 1, "LA1", 20), 2)
	del.Updated = t0.Add(40 * time.Second)
	put(t, s, del)
	put(t, s, at("p3", 1, "LA1", 40)) // same time as the delete
	org := store.Record{Type: "Organization", ID: "LA1", Version: 1, Updated: t0.Add(45 * time.Second), Owner: "LA1", Body: []byte(`{"resourceType":"Organization","id":"LA1"}`)}
	put(t, s, org)

	type ver struct {
		ID      string
		Version int64
		Deleted bool
	}
	vers := func(recs []store.Record) []ver {
		out := []ver{}
		for _, r := range recs {
			assert.Equal(t, "EpisodeOfCare", r.Type)
			assert.Equal(t, "LA1", r.Owner)
			assert.Equal(t, r.Deleted, r.Body == nil, "a tombstone has no body, a version has")
			out = append(out, ver{r.ID, r.Version, r.Deleted})
		}
		return out
	}
	all := []ver{{"p3", 1, false}, {"p2", 2, true}, {"p1", 2, false}, {"p2", 1, false}, {"p1", 1, false}}
	recs, err := th.TypeHistory(ctx, store.HistoryQuery{Type: "EpisodeOfCare", Owner: "LA1", Limit: 50})
	require.NoError(t, err)
	require.Equal(t, all, vers(recs))
	assert.JSONEq(t, string(at("p1", 2, "", 0).Body), string(recs[2].Body))

	recs, err = th.TypeHistory(ctx, store.HistoryQuery{Type: "EpisodeOfCare", Owner: "LA1", Since: t0.Add(30 * time.Second), Limit: 50})
	require.NoError(t, err)
	assert.Equal(t, all[:3], vers(recs), "since is inclusive")
	recs, err = th.TypeHistory(ctx, store.HistoryQuery{Type: "EpisodeOfCare", Owner: "LA1", Since: t0.Add(11 * time.Second), Before: t0.Add(40 * time.Second), Limit: 50})
	require.NoError(t, err)
	assert.Equal(t, all[2:4], vers(recs), "before is exclusive")

	var paged []ver
	q := store.HistoryQuery{Type: "EpisodeOfCare", Owner: "LA1", Limit: 2}
	for i := 0; i < 10; i++ {
		recs, err := th.TypeHistory(ctx, q)
		require.NoError(t, err)
		paged = append(paged, vers(recs)...)
		if len(recs) < q.Limit {
			break
		}
		q.After = recs[len(recs)-1].Position()
		// A version written between pages is newer than every version
		// already read: it is not on a later page.
		put(t, s, at(fmt.Sprintf("new%d", i), 1, "LA1", 100+i))
	}
	assert.Equal(t, all, paged, "pages neither repeat nor skip")

	recs, err = th.TypeHistory(ctx, store.HistoryQuery{Type: "EpisodeOfCare", Owner: "LA2", Limit: 50})
	require.NoError(t, err)
	require.Len(t, recs, 1)
	assert.Equal(t, "q1", recs[0].ID)
	recs, err = th.TypeHistory(ctx, store.HistoryQuery{Type: "Organization", Owner: "LA1", Limit: 50})
	require.NoError(t, err)
	require.Len(t, recs, 1)
	assert.Equal(t, "LA1", recs[0].ID)
	_, err = th.TypeHistory(ctx, store.HistoryQuery{Type: "EpisodeOfCare", Limit: 50})
	assert.Error(t, err, "an unscoped type history is refused")
}
