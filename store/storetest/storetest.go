// Package storetest is the conformance suite every store backend must pass.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
)

// Harness tells the suite how to get a fresh, empty store.
type Harness struct {
	// Open returns a new empty store, closed by the suite.
	Open func(t *testing.T) store.Store
	// Reopen, if set, closes s and opens the same database again, to check
	// durability across restarts.
	Reopen func(t *testing.T, s store.Store) store.Store
	// NoTransactions says the backend refuses multi-record commits (it must
	// return store.ErrTransactionsUnsupported and write nothing); Reason
	// says why, and is printed.
	NoTransactions bool
	Reason         string
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	t.Run("create-get", func(t *testing.T) { testCreateGet(t, h) })
	t.Run("version-conflict", func(t *testing.T) { testVersionConflict(t, h) })
	t.Run("history", func(t *testing.T) { testHistory(t, h) })
	t.Run("delete", func(t *testing.T) { testDelete(t, h) })
	t.Run("unique-keys", func(t *testing.T) { testUniqueKeys(t, h) })
	t.Run("atomic-commit", func(t *testing.T) { testAtomicCommit(t, h) })
	t.Run("derived", func(t *testing.T) { testDerived(t, h) })
	t.Run("search", func(t *testing.T) { testSearch(t, h) })
	t.Run("search-own-key", func(t *testing.T) { testSearchOwnKey(t, h) })
	t.Run("holders", func(t *testing.T) { testHolders(t, h) })
	t.Run("concurrent-unique-create", func(t *testing.T) { testConcurrentUniqueCreate(t, h) })
	t.Run("concurrent-updates", func(t *testing.T) { testConcurrentUpdates(t, h) })
	t.Run("audit", func(t *testing.T) { testAudit(t, h) })
	t.Run("audit-views", func(t *testing.T) { testAuditViews(t, h) })
	t.Run("audit-heads-and-bodies", func(t *testing.T) { testAuditHeadsAndBodies(t, h) })
	t.Run("audit-feed-while-writing", func(t *testing.T) { testAuditFeedWhileWriting(t, h) })
	t.Run("purge", func(t *testing.T) { testPurge(t, h) })
	t.Run("reopen", func(t *testing.T) { testReopen(t, h) })
	t.Run("search-updated", func(t *testing.T) { testSearchUpdated(t, h) })
	t.Run("sorted-paging-while-writing", func(t *testing.T) { testSortedPagingWhileWriting(t, h) })
	t.Run("type-history", func(t *testing.T) { testTypeHistory(t, h) })
	t.Run("search-start", func(t *testing.T) { testSearchStart(t, h) })
}

var t0 = time.Date(2026, 3, 1, 9, 30, 0, 123000000, time.UTC)

func open(t *testing.T, h Harness) store.Store {
	t.Helper()
	s := h.Open(t)
	t.Cleanup(func() { s.Close() })
	return s
}

func plan(id string, v int64, subject, owner string, keys ...string) store.Record {
	return store.Record{
		Type: "EpisodeOfCare", ID: id, Version: v, Updated: t0.Add(time.Duration(v) * time.Second),
		Owner: owner, Subject: subject, Keys: keys,
		Body: []byte(fmt.Sprintf(`{"resourceType":"EpisodeOfCare","id":%q,"meta":{"versionId":"%d"}}`, id, v)),
	}
}

func put(t *testing.T, s store.Store, r store.Record) {
	t.Helper()
	require.NoError(t, s.Commit(context.Background(), []store.Write{{Record: r, Expect: r.Version - 1}}))
}

func testCreateGet(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := context.Background()
	r := plan("p1", 1, "9449306753", "LA1", "https://la1.example/id|A1")
	r.End = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	put(t, s, r)
	got, err := s.Get(ctx, "EpisodeOfCare", "p1")
	require.NoError(t, err)
	assert.Equal(t, "EpisodeOfCare", got.Type)
	assert.Equal(t, "p1", got.ID)
	assert.Equal(t, int64(1), got.Version)
	assert.True(t, got.Updated.Equal(r.Updated), "updated %v != %v", got.Updated, r.Updated)
	assert.False(t, got.Deleted)
	assert.Equal(t, "LA1", got.Owner)
	assert.Equal(t, "9449306753", got.Subject)
	assert.True(t, got.End.Equal(r.End))
	assert.JSONEq(t, string(r.Body), string(got.Body))

	_, err = s.Get(ctx, "EpisodeOfCare", "nope")
	assert.ErrorIs(t, err, store.ErrNotFound)
	_, err = s.Get(ctx, "Organization", "p1")
	assert.ErrorIs(t, err, store.ErrNotFound, "type is part of the identity")
}

func testVersionConflict(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := context.Background()
	put(t, s, plan("p1", 1, "9449306753", "LA1"))
	err := s.Commit(ctx, []store.Write{{Record: plan("p1", 1, "9449306753", "LA1"), Expect: 0}})
	assert.ErrorIs(t, err, store.ErrVersionConflict, "create over an existing record")
	put(t, s, plan("p1", 2, "9449306753", "LA1"))
	err = s.Commit(ctx, []store.Write{{Record: plan("p1", 2, "9449306753", "LA1"), Expect: 1}})
	assert.ErrorIs(t, err, store.ErrVersionConflict, "stale expected version")
	err = s.Commit(ctx, []store.Write{{Record: plan("p2", 2, "9449306753", "LA1"), Expect: 1}})
	assert.ErrorIs(t, err, store.ErrVersionConflict, "update of a record that does not exist")
	got, err := s.Get(ctx, "EpisodeOfCare", "p1")
	require.NoError(t, err)
	assert.Equal(t, int64(2), got.Version)
}

func testHistory(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := context.Background()
	for v := int64(1); v <= 3; v++ {
		put(t, s, plan("p1", v, "9449306753", "LA1"))
	}
	hist, err := s.History(ctx, "EpisodeOfCare", "p1")
	require.NoError(t, err)
	require.Len(t, hist, 3)
	for i, r := range hist {
		assert.Equal(t, int64(3-i), r.Version, "newest first")
		assert.JSONEq(t, string(plan("p1", r.Version, "", "").Body), string(r.Body))
	}
	v2, err := s.GetVersion(ctx, "EpisodeOfCare", "p1", 2)
	require.NoError(t, err)
	assert.Equal(t, int64(2), v2.Version)
	assert.JSONEq(t, string(plan("p1", 2, "", "").Body), string(v2.Body))
	_, err = s.GetVersion(ctx, "EpisodeOfCare", "p1", 4)
	assert.ErrorIs(t, err, store.ErrNotFound)
	_, err = s.History(ctx, "EpisodeOfCare", "nope")
	assert.ErrorIs(t, err, store.ErrNotFound)
}

func tombstone(r store.Record, v int64) store.Record {
	return store.Record{Type: r.Type, ID: r.ID, Version: v, Updated: t0.Add(time.Hour), Deleted: true,
		Owner: r.Owner, Subject: r.Subject, End: t0.Add(time.Hour)}
}

func testDelete(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := context.Background()
	key := "https://la1.example/id|A1"
	r := plan("p1", 1, "9449306753", "LA1", key)
	put(t, s, r)
	put(t, s, tombstone(r, 2))
	got, err := s.Get(ctx, "EpisodeOfCare", "p1")
	require.NoError(t, err)
	assert.True(t, got.Deleted)
	assert.Equal(t, int64(2), got.Version)
	recs, _, err := s.Search(ctx, store.Query{Type: "EpisodeOfCare", Subject: "9449306753", Limit: 10})
	require.NoError(t, err)
	assert.Empty(t, recs, "tombstones are not found by search")
	// The key is free again once its holder is deleted.
	put(t, s, plan("p2", 1, "9449306753", "LA1", key))
	// And a deleted id can be written again, continuing its versions.
	put(t, s, plan("p1", 3, "9449306753", "LA1"))
	hist, err := s.History(ctx, "EpisodeOfCare", "p1")
	require.NoError(t, err)
	require.Len(t, hist, 3)
	assert.True(t, hist[1].Deleted)
}

func testUniqueKeys(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := context.Background()
	key := "https://la1.example/id|A1"
	put(t, s, plan("p1", 1, "9449306753", "LA1", key))
	err := s.Commit(ctx, []store.Write{{Record: plan("p2", 1, "9449306753", "LA1", key)}})
	require.ErrorIs(t, err, store.ErrUniqueConflict)
	var ue *store.UniqueError
	require.ErrorAs(t, err, &ue)
	assert.Equal(t, "p1", ue.HeldBy)
	assert.Equal(t, key, ue.Key)
	_, err = s.Get(ctx, "EpisodeOfCare", "p2")
	assert.ErrorIs(t, err, store.ErrNotFound, "the refused write left nothing")
	// A record keeps its own key across versions, and the same key value is
	// independent across types.
	put(t, s, plan("p1", 2, "9449306753", "LA1", key))
	org := store.Record{Type: "Organization", ID: "o1", Version: 1, Updated: t0, Owner: "LA1", Keys: []string{key}, Body: []byte(`{}`)}
	put(t, s, org)
	// Dropping a key frees it.
	put(t, s, plan("p1", 3, "9449306753", "LA1"))
	put(t, s, plan("p2", 1, "9449306753", "LA1", key))
	recs, _, err := s.Search(ctx, store.Query{Type: "EpisodeOfCare", Key: key, Limit: 10})
	require.NoError(t, err)
	require.Len(t, recs, 1)
	assert.Equal(t, "p2", recs[0].ID)
}

func testAtomicCommit(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := context.Background()
	put(t, s, plan("p1", 1, "9449306753", "LA1"))
	writes := []store.Write{
		{Record: plan("a", 1, "9449306753", "LA1")},
		{Record: plan("b", 1, "9449306753", "LA1")},
		{Record: plan("p1", 3, "9449306753", "LA1"), Expect: 2}, // stale: fails
	}
	err := s.Commit(ctx, writes)
	if h.NoTransactions {
		t.Logf("multi-record commits: expecting refusal, because %s", h.Reason)
		require.ErrorIs(t, err, store.ErrTransactionsUnsupported)
	} else {
		require.ErrorIs(t, err, store.ErrVersionConflict)
	}
	for _, id := range []string{"a", "b"} {
		_, err := s.Get(ctx, "EpisodeOfCare", id)
		assert.ErrorIs(t, err, store.ErrNotFound, "%s must not be written", id)
	}
	if h.NoTransactions {
		t.Skipf("skipping the successful multi-record commit: %s", h.Reason)
	}
	require.NoError(t, s.Commit(ctx, writes[:2]))
	for _, id := range []string{"a", "b"} {
		_, err := s.Get(ctx, "EpisodeOfCare", id)
		assert.NoError(t, err)
	}
	// Two writes of one record in one commit chain their versions.
	require.NoError(t, s.Commit(ctx, []store.Write{
		{Record: plan("c", 1, "9449306753", "LA1")},
		{Record: plan("c", 2, "9449306753", "LA1"), Expect: 1},
	}))
	got, err := s.Get(ctx, "EpisodeOfCare", "c")
	require.NoError(t, err)
	assert.Equal(t, int64(2), got.Version)
}

func withFlag(r store.Record, status string) store.Record {
	r.Derived = &store.Derived{Type: "Flag", Body: []byte(fmt.Sprintf(`{"resourceType":"Flag","id":%q,"status":%q}`, r.ID, status))}
	return r
}

func testDerived(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := context.Background()
	ends := t0.Add(48 * time.Hour)
	r := withFlag(plan("p1", 1, "9449306753", "LA1"), "active")
	r.Derived.Ends = ends
	put(t, s, r)

	f, err := s.Get(ctx, "Flag", "p1")
	require.NoError(t, err)
	assert.Equal(t, "Flag", f.Type)
	assert.Equal(t, int64(1), f.Version)
	assert.Equal(t, "LA1", f.Owner)
	assert.Equal(t, "9449306753", f.Subject)
	assert.JSONEq(t, `{"resourceType":"Flag","id":"p1","status":"active"}`, string(f.Body))
	assert.True(t, f.Ends.Equal(ends))
	assert.Nil(t, f.Derived)

	src, err := s.Get(ctx, "EpisodeOfCare", "p1")
	require.NoError(t, err)
	require.NotNil(t, src.Derived)
	assert.Equal(t, "Flag", src.Derived.Type)

	put(t, s, withFlag(plan("p1", 2, "9449306753", "LA1"), "inactive"))
	flags, total, err := s.Search(ctx, store.Query{Type: "Flag", Subject: "9449306753", Limit: 10, Count: true})
	require.NoError(t, err)
	assert.Equal(t, 1, total)
	require.Len(t, flags, 1)
	assert.Equal(t, "Flag", flags[0].Type)
	assert.JSONEq(t, `{"resourceType":"Flag","id":"p1","status":"inactive"}`, string(flags[0].Body))

	hist, err := s.History(ctx, "Flag", "p1")
	require.NoError(t, err)
	require.Len(t, hist, 2)
	assert.Equal(t, "Flag", hist[1].Type)
	assert.JSONEq(t, `{"resourceType":"Flag","id":"p1","status":"active"}`, string(hist[1].Body))
	v1, err := s.GetVersion(ctx, "Flag", "p1", 1)
	require.NoError(t, err)
	assert.JSONEq(t, `{"resourceType":"Flag","id":"p1","status":"active"}`, string(v1.Body))

	// Deleting the source deletes the derived record with it.
	del := tombstone(plan("p1", 3, "9449306753", "LA1"), 3)
	del.Derived = &store.Derived{Type: "Flag"}
	put(t, s, del)
	f, err = s.Get(ctx, "Flag", "p1")
	require.NoError(t, err)
	assert.True(t, f.Deleted)
	flags, _, err = s.Search(ctx, store.Query{Type: "Flag", Subject: "9449306753", Limit: 10})
	require.NoError(t, err)
	assert.Empty(t, flags)
	_, err = s.Get(ctx, "Flag", "nope")
	assert.ErrorIs(t, err, store.ErrNotFound)
}

func ids(recs []store.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

func testSearch(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := context.Background()
	cutoff := t0.Add(-24 * time.Hour)
	for i, c := range []struct {
		id, subject, owner string
		end                time.Time
	}{
		{"a1", "9449306753", "LA1", time.Time{}},
		{"a2", "9449306753", "LA2", time.Time{}},
		{"a3", "9449306753", "LA1", cutoff.Add(-time.Second)}, // ended too long ago
		{"a4", "9449306753", "LA1", cutoff.Add(time.Second)},
		{"b1", "9449306761", "LA1", time.Time{}},
	} {
		r := withFlag(plan(c.id, 1, c.subject, c.owner, fmt.Sprintf("https://la.example/id|K%d", i)), "active")
		r.End = c.end
		put(t, s, r)
	}
	q := func(q store.Query) []string {
		t.Helper()
		recs, _, err := s.Search(ctx, q)
		require.NoError(t, err)
		return ids(recs)
	}
	assert.Equal(t, []string{"a1", "a2", "a3", "a4"}, q(store.Query{Type: "EpisodeOfCare", Subject: "9449306753", Limit: 50}))
	assert.Equal(t, []string{"a1", "a2", "a4"}, q(store.Query{Type: "Flag", Subject: "9449306753", RetainedSince: cutoff, Limit: 50}))
	assert.Equal(t, []string{"a1", "a3", "a4"}, q(store.Query{Type: "EpisodeOfCare", Subject: "9449306753", Owner: "LA1", Limit: 50}))
	assert.Equal(t, []string{"a1", "a3", "a4", "b1"}, q(store.Query{Type: "Flag", Owner: "LA1", Limit: 50}))
	assert.Equal(t, []string{"a2"}, q(store.Query{Type: "EpisodeOfCare", Key: "https://la.example/id|K1", Limit: 50}))
	assert.Empty(t, q(store.Query{Type: "EpisodeOfCare", Key: "https://la.example/id|K1", Owner: "LA1", Limit: 50}))
	assert.Equal(t, []string{"a2", "b1"}, q(store.Query{Type: "EpisodeOfCare", IDs: []string{"b1", "a2", "zz"}, Limit: 50}))
	assert.Empty(t, q(store.Query{Type: "Organization", Subject: "9449306753", Limit: 50}))
	// Many children at once.
	assert.Equal(t, []string{"a1", "a3", "a4", "b1"}, q(store.Query{Type: "EpisodeOfCare", Subjects: []string{"9449306761", "9449306753", "9990000018"}, Owner: "LA1", Limit: 50}))
	assert.Equal(t, []string{"a1", "a4", "b1"}, q(store.Query{Type: "Flag", Subjects: []string{"9449306753", "9449306761"}, Owner: "LA1", RetainedSince: cutoff, Limit: 50}))
	assert.Equal(t, []string{"b1"}, q(store.Query{Type: "EpisodeOfCare", Subjects: []string{"9449306761"}, Limit: 50}))
	assert.Equal(t, []string{"a1", "a2"}, q(store.Query{Type: "EpisodeOfCare", Subjects: []string{"9449306761", "9449306753"}, Limit: 2}))
	assert.Empty(t, q(store.Query{Type: "EpisodeOfCare", Subjects: []string{"9449306761"}, Subject: "9449306753", Limit: 50}), "with Subject: both must hold")
	assert.Equal(t, []string{"a2"}, q(store.Query{Type: "EpisodeOfCare", Subjects: []string{"9449306761", "9449306753"}, Subject: "9449306753", Owner: "LA2", Limit: 50}))
	// In any order: the same matches, whatever order they come in.
	for _, qq := range []store.Query{
		{Type: "EpisodeOfCare", Subjects: []string{"9449306761", "9449306753", "9990000018"}, Owner: "LA1", Limit: 50},
		{Type: "Flag", Subjects: []string{"9449306753", "9449306761"}, Owner: "LA1", RetainedSince: cutoff, Limit: 50},
		{Type: "EpisodeOfCare", Subject: "9449306753", Limit: 50},
	} {
		want := q(qq)
		qq.Sort = store.SortNone
		assert.ElementsMatch(t, want, q(qq), "%+v", qq)
		qq.Limit = 1
		assert.Len(t, q(qq), 1, "the limit holds")
	}

	// Keyset paging with a total.
	recs, total, err := s.Search(ctx, store.Query{Type: "Flag", Subject: "9449306753", Limit: 2, Count: true})
	require.NoError(t, err)
	assert.Equal(t, 4, total)
	assert.Equal(t, []string{"a1", "a2"}, ids(recs))
	recs, total, err = s.Search(ctx, store.Query{Type: "Flag", Subject: "9449306753", Limit: 2, After: "a2", Count: true})
	require.NoError(t, err)
	assert.Equal(t, 4, total, "the total ignores the paging position")
	assert.Equal(t, []string{"a3", "a4"}, ids(recs))
	recs, total, err = s.Search(ctx, store.Query{Type: "Flag", Subject: "9449306753", Count: true})
	require.NoError(t, err)
	assert.Equal(t, 4, total)
	assert.Empty(t, recs, "Limit 0 returns only the count")
}

// testSearchOwnKey: an identifier searched without knowing who manages the
// record (a health user's search of a patient's plans) is matched by the
// store before paging and counting, with every other condition.
func testSearchOwnKey(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := context.Background()
	const nhs, other = "9449306753", "9449306761"
	for _, r := range []store.Record{
		plan("a1", 1, nhs, "LA1", "LA1|https://la.example/id|X"),
		plan("a2", 1, nhs, "LA2", "LA2|https://la.example/id|Y"),
		plan("a3", 1, nhs, "LA2", "LA2|https://la.example/id|X", "LA2|https://la.example/id|Z"),
		plan("a4", 1, nhs, "LA1", "LA1|https://la.example/id|W"),
		plan("b1", 1, other, "LA1", "LA1|https://la.example/id|V"),
		plan("b2", 1, other, "LA3", "LA3|https://la.example/id|X"),
	} {
		put(t, s, withFlag(r, "active"))
	}
	search := func(q store.Query) ([]string, int) {
		t.Helper()
		q.Type, q.Count = "EpisodeOfCare", true
		recs, total, err := s.Search(ctx, q)
		require.NoError(t, err)
		return ids(recs), total
	}
	got, total := search(store.Query{Subject: nhs, OwnKey: "https://la.example/id|X", Limit: 1})
	assert.Equal(t, []string{"a1"}, got)
	assert.Equal(t, 2, total, "the total counts every match, not the page")
	got, total = search(store.Query{Subject: nhs, OwnKey: "https://la.example/id|X", Limit: 1, After: "a1"})
	assert.Equal(t, []string{"a3"}, got, "the next page holds the second match")
	assert.Equal(t, 2, total)
	_, total = search(store.Query{Subject: nhs, OwnKey: "https://la.example/id|X"})
	assert.Equal(t, 2, total, "a count alone applies the identifier too")
	got, _ = search(store.Query{Subject: nhs, OwnKey: "https://la.example/id|Z", Limit: 10})
	assert.Equal(t, []string{"a3"}, got, "a record's second key matches")
	got, _ = search(store.Query{Subject: other, OwnKey: "https://la.example/id|X", Limit: 10})
	assert.Equal(t, []string{"b2"}, got)
	got, total = search(store.Query{Subject: nhs, OwnKey: "https://la.example/id|V", Limit: 10})
	assert.Empty(t, got, "another patient's identifier")
	assert.Zero(t, total)
	got, _ = search(store.Query{Subject: nhs, OwnKey: "la.example/id|X", Limit: 10})
	assert.Empty(t, got, "only the whole identifier matches")
	got, _ = search(store.Query{Subject: nhs, OwnKey: "https://la.example/id|X", Owner: "LA2", Limit: 10})
	assert.Equal(t, []string{"a3"}, got)
	recs, _, err := s.Search(ctx, store.Query{Type: "Flag", Subject: nhs, Limit: 10})
	require.NoError(t, err)
	assert.Len(t, recs, 4)
}

// testHolders: each key maps to the live record holding it, read with its
// derived record; keys nobody holds, keys freed by a delete or a later
// version, and another type's keys are absent; more keys than one read
// takes are all answered.
func testHolders(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := context.Background()
	const nhs = "9449306753"
	k := func(v string) string { return "LA1|https://la.example/id|" + v }
	a := withFlag(plan("a", 1, nhs, "LA1", k("A1"), k("A2")), "active")
	b := plan("b", 1, nhs, "LA1", k("B"))
	gone := plan("gone", 1, nhs, "LA1", k("GONE"))
	moved := plan("moved", 1, nhs, "LA1", k("OLD"))
	org := store.Record{Type: "Organization", ID: "o1", Version: 1, Updated: t0, Owner: "LA1", Keys: []string{k("ORG")}, Body: []byte(`{}`)}
	for _, r := range []store.Record{a, b, gone, moved, org} {
		put(t, s, r)
	}
	put(t, s, tombstone(gone, 2))
	put(t, s, plan("moved", 2, nhs, "LA1", k("NEW")))

	got, err := s.Holders(ctx, "EpisodeOfCare", []string{k("A1"), k("A2"), k("B"), k("GONE"), k("OLD"), k("NEW"), k("ORG"), k("NONE"), k("B")})
	require.NoError(t, err)
	held := map[string]string{}
	for key, r := range got {
		held[key] = r.ID + "/" + strconv.FormatInt(r.Version, 10)
	}
	assert.Equal(t, map[string]string{k("A1"): "a/1", k("A2"): "a/1", k("B"): "b/1", k("NEW"): "moved/2"}, held)
	rec := got[k("A1")]
	assert.Equal(t, "EpisodeOfCare", rec.Type)
	assert.Equal(t, a.Body, rec.Body)
	assert.Equal(t, nhs, rec.Subject)
	assert.Equal(t, "LA1", rec.Owner)
	require.NotNil(t, rec.Derived, "the record is read whole, with its derived record")
	assert.Equal(t, "Flag", rec.Derived.Type)

	got, err = s.Holders(ctx, "Organization", []string{k("ORG"), k("A1")})
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, "o1", got[k("ORG")].ID)
	got, err = s.Holders(ctx, "Flag", []string{k("A1")})
	require.NoError(t, err)
	assert.Empty(t, got, "keys belong to primary records")
	got, err = s.Holders(ctx, "EpisodeOfCare", nil)
	require.NoError(t, err)
	assert.Empty(t, got)

	// More keys than any one read asks about: every tenth is held.
	var keys []string
	for i := range 2500 {
		keys = append(keys, k(fmt.Sprintf("M%04d", i)))
		if i%10 == 0 {
			put(t, s, plan(fmt.Sprintf("m%04d", i), 1, nhs, "LA1", keys[i]))
		}
	}
	got, err = s.Holders(ctx, "EpisodeOfCare", keys)
	require.NoError(t, err)
	require.Len(t, got, 250)
	for i, key := range keys {
		if i%10 == 0 {
			assert.Equal(t, fmt.Sprintf("m%04d", i), got[key].ID)
		}
	}
}

func testConcurrentUniqueCreate(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := context.Background()
	key := "https://la1.example/id|RACE"
	const n = 10
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = s.Commit(ctx, []store.Write{{Record: plan(fmt.Sprintf("r%d", i), 1, "9449306753", "LA1", key)}})
		}(i)
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else {
			assert.ErrorIs(t, err, store.ErrUniqueConflict)
		}
	}
	assert.Equal(t, 1, ok, "exactly one create wins")
	recs, total, err := s.Search(ctx, store.Query{Type: "EpisodeOfCare", Key: key, Limit: 50, Count: true})
	require.NoError(t, err)
	assert.Equal(t, 1, total)
	assert.Len(t, recs, 1)
	all, _, err := s.Search(ctx, store.Query{Type: "EpisodeOfCare", Subject: "9449306753", Limit: 50})
	require.NoError(t, err)
	assert.Len(t, all, 1, "the losers left nothing behind")
}

func testConcurrentUpdates(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := context.Background()
	put(t, s, plan("p1", 1, "9449306753", "LA1"))
	const n = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	conflicts := 0
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				cur, err := s.Get(ctx, "EpisodeOfCare", "p1")
				if !assert.NoError(t, err) {
					return
				}
				err = s.Commit(ctx, []store.Write{{Record: plan("p1", cur.Version+1, "9449306753", "LA1"), Expect: cur.Version}})
				if err == nil {
					return
				}
				if !assert.ErrorIs(t, err, store.ErrVersionConflict) {
					return
				}
				mu.Lock()
				conflicts++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	got, err := s.Get(ctx, "EpisodeOfCare", "p1")
	require.NoError(t, err)
	assert.Equal(t, int64(n+1), got.Version, "every update applied exactly once")
	hist, err := s.History(ctx, "EpisodeOfCare", "p1")
	require.NoError(t, err)
	assert.Len(t, hist, n+1)
	t.Logf("%d compare-and-swap conflicts retried", conflicts)
}

func audit(id string, at time.Time, subject, agent string, notify bool, owners ...string) store.AuditRecord {
	return store.AuditRecord{ID: id, Recorded: at, Subject: subject, Agent: agent, Notify: notify, Owners: owners,
		Body: []byte(fmt.Sprintf(`{"resourceType":"AuditEvent","id":%q}`, id))}
}

func testAudit(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := context.Background()
	require.NoError(t, s.Audit(ctx, []store.AuditRecord{
		audit("e1", t0, "9449306753", "u1", true, "LA1"),
		audit("e2", t0.Add(time.Minute), "9449306753", "u2", true, "LA1", "LA2"),
		audit("e3", t0.Add(2*time.Minute), "9449306753", "la", false, "LA1"),
		audit("e4", t0.Add(3*time.Minute), "9449306761", "u1", true, "LA2"),
	}))
	recs, err := s.AuditBySubject(ctx, "9449306753", t0.Add(-time.Hour), 100)
	require.NoError(t, err)
	require.Len(t, recs, 2, "only notifying records")
	assert.Equal(t, "e1", recs[0].ID, "oldest first")
	assert.Equal(t, "e2", recs[1].ID)
	assert.True(t, recs[1].Recorded.Equal(t0.Add(time.Minute)))
	assert.Equal(t, "u2", recs[1].Agent)
	assert.ElementsMatch(t, []string{"LA1", "LA2"}, recs[1].Owners)
	assert.JSONEq(t, `{"resourceType":"AuditEvent","id":"e2"}`, string(recs[1].Body))
	recs, err = s.AuditBySubject(ctx, "9449306753", t0.Add(30*time.Second), 100)
	require.NoError(t, err)
	assert.Len(t, recs, 1)
	recs, err = s.AuditBySubject(ctx, "9449306753", time.Time{}, 1)
	require.NoError(t, err)
	assert.Equal(t, []string{"e2"}, auditIDs(recs), "the limit keeps the most recent")
	recs, err = s.AuditBySubject(ctx, "9449306753", time.Time{}, 0)
	require.NoError(t, err)
	assert.Empty(t, recs)

	for _, c := range []struct {
		owner string
		since time.Time
		want  int
	}{{"LA1", time.Time{}, 2}, {"LA2", time.Time{}, 2}, {"LA1", t0.Add(30 * time.Second), 1}, {"LA3", time.Time{}, 0}} {
		n, err := s.AuditFeedTotal(ctx, c.owner, c.since)
		require.NoError(t, err)
		assert.Equal(t, c.want, n, "feed total of %s since %v: notifying records only", c.owner, c.since)
	}

	feed, cur, err := s.AuditFeed(ctx, "LA2", time.Time{}, "", 10)
	require.NoError(t, err)
	assert.Equal(t, []string{"e2", "e4"}, auditIDs(feed))
	feed, _, err = s.AuditFeed(ctx, "LA2", time.Time{}, cur, 10)
	require.NoError(t, err)
	assert.Empty(t, feed)
	feed, _, err = s.AuditFeed(ctx, "LA1", t0.Add(30*time.Second), "", 10)
	require.NoError(t, err)
	assert.Equal(t, []string{"e2"}, auditIDs(feed), "since filters, non-notifying records are left out")
	_, _, err = s.AuditFeed(ctx, "LA1", time.Time{}, "not-a-cursor", 10)
	assert.ErrorIs(t, err, store.ErrInvalidCursor)
}

// testAuditHeadsAndBodies: the heads of a subject's access history are its
// records without bodies (same records, order, limit and since), and the
// bodies read back by sequence number are the whole records, in the order
// asked, without a number no record has.
func testAuditHeadsAndBodies(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := context.Background()
	views := audit("e2", t0.Add(time.Minute), "9449306753", "u2", true, "LA1", "LA2")
	views.Views = map[string][]byte{"LA1": []byte(`{"v":"LA1"}`), "LA2": []byte(`{"v":"LA2"}`)}
	require.NoError(t, s.Audit(ctx, []store.AuditRecord{
		audit("e1", t0, "9449306753", "u1", true, "LA1"),
		views,
		audit("e3", t0.Add(2*time.Minute), "9449306753", "la", false, "LA1"),
		audit("e4", t0.Add(3*time.Minute), "9449306761", "u1", true, "LA2"),
		audit("e5", t0.Add(4*time.Minute), "9449306753", "u1", true, "LA1"),
	}))
	for _, c := range []struct {
		since time.Time
		limit int
	}{{time.Time{}, 100}, {t0.Add(30 * time.Second), 100}, {time.Time{}, 2}, {time.Time{}, 0}} {
		full, err := s.AuditBySubject(ctx, "9449306753", c.since, c.limit)
		require.NoError(t, err)
		heads, err := s.AuditHeadsBySubject(ctx, "9449306753", c.since, c.limit)
		require.NoError(t, err)
		require.Equal(t, auditIDs(full), auditIDs(heads), "since %v, limit %d", c.since, c.limit)
		for i, hd := range heads {
			assert.Nil(t, hd.Body, hd.ID)
			assert.Nil(t, hd.Views, hd.ID)
			assert.NotZero(t, hd.Seq, hd.ID)
			f := full[i]
			assert.Equal(t, f.Seq, hd.Seq, hd.ID)
			assert.Equal(t, f.Subject, hd.Subject, hd.ID)
			assert.Equal(t, f.Agent, hd.Agent, hd.ID)
			assert.True(t, f.Notify && hd.Notify, hd.ID)
			assert.True(t, f.Recorded.Equal(hd.Recorded), hd.ID)
			assert.ElementsMatch(t, f.Owners, hd.Owners, hd.ID)
		}
	}
	heads, err := s.AuditHeadsBySubject(ctx, "9449306753", time.Time{}, 100)
	require.NoError(t, err)
	require.Equal(t, []string{"e1", "e2", "e5"}, auditIDs(heads))
	seqs := []int64{heads[2].Seq, heads[0].Seq, heads[2].Seq + 1000, heads[1].Seq}
	recs, err := s.AuditBodies(ctx, seqs)
	require.NoError(t, err)
	require.Equal(t, []string{"e5", "e1", "e2"}, auditIDs(recs), "in the order asked; an unknown number left out")
	assert.JSONEq(t, `{"resourceType":"AuditEvent","id":"e5"}`, string(recs[0].Body))
	assert.Equal(t, "9449306753", recs[0].Subject)
	assert.Equal(t, heads[2].Seq, recs[0].Seq)
	assert.JSONEq(t, `{"v":"LA2"}`, string(recs[2].Views["LA2"]))
	assert.ElementsMatch(t, []string{"LA1", "LA2"}, recs[2].Owners)
	recs, err = s.AuditBodies(ctx, nil)
	require.NoError(t, err)
	assert.Empty(t, recs)
}

// testAuditViews: an access that showed two local authorities' plans keeps
// each authority's own view, served back by both reads; an access without
// views reads back without them.
func testAuditViews(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := context.Background()
	both := audit("e1", t0, "9449306753", "u1", true, "LA1", "LA2")
	both.Views = map[string][]byte{
		"LA1": []byte(`{"resourceType":"AuditEvent","id":"e1","outcomeDesc":"1 plan found","v":"LA1"}`),
		"LA2": []byte(`{"resourceType":"AuditEvent","id":"e1","outcomeDesc":"1 plan found","v":"LA2"}`),
	}
	require.NoError(t, s.Audit(ctx, []store.AuditRecord{both, audit("e2", t0.Add(time.Minute), "9449306753", "u2", true, "LA1")}))
	recs, err := s.AuditBySubject(ctx, "9449306753", time.Time{}, 10)
	require.NoError(t, err)
	require.Equal(t, []string{"e1", "e2"}, auditIDs(recs))
	assert.JSONEq(t, `{"resourceType":"AuditEvent","id":"e1"}`, string(recs[0].Body), "the whole record for health users")
	require.Len(t, recs[0].Views, 2)
	assert.JSONEq(t, string(both.Views["LA1"]), string(recs[0].Views["LA1"]))
	assert.JSONEq(t, string(both.Views["LA2"]), string(recs[0].Views["LA2"]))
	assert.Empty(t, recs[1].Views)
	for _, owner := range []string{"LA1", "LA2"} {
		feed, _, err := s.AuditFeed(ctx, owner, time.Time{}, "", 10)
		require.NoError(t, err)
		require.NotEmpty(t, feed)
		assert.Equal(t, "e1", feed[0].ID)
		assert.JSONEq(t, string(both.Views[owner]), string(feed[0].Views[owner]), "the feed carries %s's view", owner)
	}
}

func auditIDs(recs []store.AuditRecord) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

func testAuditFeedWhileWriting(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := context.Background()
	const writers, each = 4, 60
	var wg sync.WaitGroup
	start := time.Now().UTC()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				id := fmt.Sprintf("w%d-%03d", w, i)
				if !assert.NoError(t, s.Audit(ctx, []store.AuditRecord{audit(id, time.Now().UTC(), "9449306753", id, true, "LA1")})) {
					return
				}
			}
		}(w)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	seen := FollowFeed(t, []store.Store{s}, "LA1", start.Add(-time.Minute), 7, done)
	AssertSeenOnce(t, seen, writers*each)
}

// FollowFeed pages through owner's feed from since, n records a page, taking
// the stores in turn (several processes on one database), until a page is
// empty after done is closed. It returns how often each record was seen.
func FollowFeed(t *testing.T, stores []store.Store, owner string, since time.Time, n int, done <-chan struct{}) map[string]int {
	t.Helper()
	ctx := context.Background()
	seen := map[string]int{}
	cursor := ""
	finished := false
	for page := 0; ; page++ {
		recs, next, err := stores[page%len(stores)].AuditFeed(ctx, owner, since, cursor, n)
		require.NoError(t, err)
		for _, r := range recs {
			seen[r.ID]++
		}
		cursor = next
		if len(recs) == 0 {
			if finished {
				return seen
			}
			select {
			case <-done:
				finished = true
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
}

// AssertSeenOnce checks a feed showed want records, each exactly once.
func AssertSeenOnce(t *testing.T, seen map[string]int, want int) {
	t.Helper()
	assert.Len(t, seen, want, "every record seen")
	var dup []string
	for id, n := range seen {
		if n != 1 {
			dup = append(dup, id)
		}
	}
	sort.Strings(dup)
	assert.Empty(t, dup, "no record seen twice")
}

func testPurge(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := context.Background()
	cutoff := t0
	old := withFlag(plan("old", 1, "9449306753", "LA1", "https://la.example/id|OLD"), "inactive")
	old.End = cutoff.Add(-time.Hour)
	put(t, s, old)
	old2 := withFlag(plan("old", 2, "9449306753", "LA1", "https://la.example/id|OLD"), "inactive")
	old2.End = cutoff.Add(-time.Hour)
	put(t, s, old2)
	keep := withFlag(plan("keep", 1, "9449306761", "LA1"), "active")
	put(t, s, keep)
	recent := withFlag(plan("recent", 1, "9449306788", "LA1"), "inactive")
	recent.End = cutoff.Add(time.Hour)
	put(t, s, recent)
	require.NoError(t, s.Audit(ctx, []store.AuditRecord{
		audit("gone", cutoff.Add(-2*time.Hour), "9449306753", "u1", true, "LA1"),
		audit("new", cutoff.Add(time.Minute), "9449306753", "u1", true, "LA1"),
		audit("kept", cutoff.Add(-2*time.Hour), "9449306761", "u1", true, "LA1"),
	}))

	var wg sync.WaitGroup
	stats := make([]store.PurgeStats, 3)
	for i := range stats {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var err error
			stats[i], err = s.Purge(ctx, cutoff)
			assert.NoError(t, err)
		}(i)
	}
	wg.Wait()
	removed, auditRemoved := 0, 0
	for _, st := range stats {
		removed += st.Records
		auditRemoved += st.Audit
	}
	assert.Equal(t, 1, removed, "one record purged across concurrent purges")
	assert.Equal(t, 1, auditRemoved)

	for _, typ := range []string{"EpisodeOfCare", "Flag"} {
		_, err := s.Get(ctx, typ, "old")
		assert.ErrorIs(t, err, store.ErrNotFound, typ)
		_, err = s.History(ctx, typ, "old")
		assert.ErrorIs(t, err, store.ErrNotFound, typ)
		_, err = s.GetVersion(ctx, typ, "old", 1)
		assert.ErrorIs(t, err, store.ErrNotFound, typ)
	}
	for _, id := range []string{"keep", "recent"} {
		_, err := s.Get(ctx, "EpisodeOfCare", id)
		assert.NoError(t, err, id)
	}
	// The purged record's key is free.
	put(t, s, plan("other", 1, "9449306753", "LA1", "https://la.example/id|OLD"))
	recs, err := s.AuditBySubject(ctx, "9449306753", time.Time{}, 100)
	require.NoError(t, err)
	assert.Equal(t, []string{"new"}, auditIDs(recs))
	recs, err = s.AuditBySubject(ctx, "9449306761", time.Time{}, 100)
	require.NoError(t, err)
	assert.Equal(t, []string{"kept"}, auditIDs(recs), "a subject with a retained record keeps its history")
	feed, _, err := s.AuditFeed(ctx, "LA1", time.Time{}, "", 10)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"new", "kept"}, auditIDs(feed))
}

func testReopen(t *testing.T, h Harness) {
	if h.Reopen == nil {
		t.Skip("the harness cannot reopen this backend")
	}
	s := h.Open(t)
	ctx := context.Background()
	put(t, s, withFlag(plan("p1", 1, "9449306753", "LA1", "https://la.example/id|X"), "active"))
	require.NoError(t, s.Audit(ctx, []store.AuditRecord{audit("e1", t0, "9449306753", "u1", true, "LA1")}))
	s = h.Reopen(t, s)
	defer s.Close()
	f, err := s.Get(ctx, "Flag", "p1")
	require.NoError(t, err)
	assert.Equal(t, int64(1), f.Version)
	recs, _, err := s.Search(ctx, store.Query{Type: "EpisodeOfCare", Key: "https://la.example/id|X", Limit: 1})
	require.NoError(t, err)
	assert.Len(t, recs, 1)
	a, err := s.AuditBySubject(ctx, "9449306753", time.Time{}, 100)
	require.NoError(t, err)
	assert.Len(t, a, 1)
	err = s.Commit(ctx, []store.Write{{Record: plan("p1", 1, "9449306753", "LA1")}})
	assert.True(t, errors.Is(err, store.ErrVersionConflict), "versions survive a restart")
}
