package storetest

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
)

// RunDump checks a dump of one store loads into another (either backend)
// and that the target then answers every read as the source did: current
// versions, history, search, access history and the LA feed, including a
// feed cursor the source issued before the move.
func RunDump(t *testing.T, from, to Harness) {
	ctx := context.Background()
	src := open(t, from)
	dst := open(t, to)

	// Records: created, updated (with a derived record whose end changes),
	// deleted, with keys; some with several versions.
	for i := 0; i < 12; i++ {
		id := fmt.Sprintf("p%02d", i)
		subject := fmt.Sprintf("94493067%02d", i%4)
		owner := []string{"LA1", "LA2"}[i%2]
		r := plan(id, 1, subject, owner, owner+"|https://la.example/id|"+id)
		r.Derived = &store.Derived{Type: "Flag", Body: []byte(fmt.Sprintf(`{"resourceType":"Flag","id":%q}`, id)), Ends: t0.Add(48 * time.Hour)}
		put(t, src, r)
		v := int64(1)
		if i%3 == 0 {
			v++
			r2 := plan(id, v, subject, owner, owner+"|https://la.example/id|"+id+"-b")
			r2.End = t0.Add(24 * time.Hour)
			r2.Ends = t0.Add(12 * time.Hour)
			r2.Derived = &store.Derived{Type: "Flag", Body: []byte(`{"resourceType":"Flag","id":"x","status":"inactive"}`)}
			put(t, src, r2)
		}
		if i%4 == 1 {
			put(t, src, store.Record{Type: "EpisodeOfCare", ID: id, Version: v + 1, Updated: t0.Add(time.Hour), Deleted: true, Owner: owner, Subject: subject})
		}
	}
	// Access records: notifying and not, one with per-authority views.
	var recs []store.AuditRecord
	for i := 0; i < 30; i++ {
		a := audit(fmt.Sprintf("e%02d", i), t0.Add(time.Duration(i)*time.Minute), fmt.Sprintf("94493067%02d", i%4), "u1", i%5 != 0, "LA1")
		if i%7 == 0 {
			a.Owners = []string{"LA1", "LA2"}
			a.Views = map[string][]byte{"LA1": []byte(`{"v":"LA1"}`), "LA2": []byte(`{"v":"LA2"}`)}
		}
		recs = append(recs, a)
	}
	for _, a := range recs {
		require.NoError(t, src.Audit(ctx, []store.AuditRecord{a}))
	}
	// A cursor an LA holds before the move.
	page, cursor, err := src.AuditFeed(ctx, "LA1", time.Time{}, "", 7)
	require.NoError(t, err)
	require.Len(t, page, 7)

	empty, err := dst.(store.Loader).Empty(ctx)
	require.NoError(t, err)
	require.True(t, empty)
	items := dump(t, src)
	require.NoError(t, loadAll(ctx, dst, items))
	empty, err = dst.(store.Loader).Empty(ctx)
	require.NoError(t, err)
	require.False(t, empty, "a loaded store is not empty")

	assert.Equal(t, items, dump(t, dst), "the target dumps exactly what was loaded")

	for i := 0; i < 12; i++ {
		id := fmt.Sprintf("p%02d", i)
		for _, typ := range []string{"EpisodeOfCare", "Flag"} {
			a, errA := src.Get(ctx, typ, id)
			b, errB := dst.Get(ctx, typ, id)
			require.Equal(t, errA == nil, errB == nil, "%s/%s", typ, id)
			assert.Equal(t, a, b, "Get %s/%s", typ, id)
			ha, _ := src.History(ctx, typ, id)
			hb, _ := dst.History(ctx, typ, id)
			assert.Equal(t, ha, hb, "History %s/%s", typ, id)
		}
	}
	for _, q := range []store.Query{
		{Type: "Flag", Subject: "9449306700", Limit: 50, Count: true},
		{Type: "EpisodeOfCare", Owner: "LA1", Limit: 50, Count: true},
		{Type: "EpisodeOfCare", OwnKey: "https://la.example/id|p03-b", Owner: "LA2", Limit: 5},
		{Type: "EpisodeOfCare", Key: "LA1|https://la.example/id|p02", Limit: 5},
		{Type: "Flag", Limit: 50, Count: true, RetainedSince: t0.Add(30 * time.Hour)},
	} {
		a, na, err := src.Search(ctx, q)
		require.NoError(t, err)
		b, nb, err := dst.Search(ctx, q)
		require.NoError(t, err)
		assert.Equal(t, a, b, "Search %+v", q)
		if q.Count {
			assert.Equal(t, na, nb, "Search total %+v", q)
		}
	}
	for s := 0; s < 4; s++ {
		subject := fmt.Sprintf("94493067%02d", s)
		a, err := src.AuditBySubject(ctx, subject, time.Time{}, 100)
		require.NoError(t, err)
		b, err := dst.AuditBySubject(ctx, subject, time.Time{}, 100)
		require.NoError(t, err)
		assert.Equal(t, normAudit(a), normAudit(b), "access history of %s", subject)
	}
	for _, owner := range []string{"LA1", "LA2"} {
		ta, err := src.AuditFeedTotal(ctx, owner, time.Time{})
		require.NoError(t, err)
		tb, err := dst.AuditFeedTotal(ctx, owner, time.Time{})
		require.NoError(t, err)
		assert.Equal(t, ta, tb, "feed total of %s", owner)
	}
	// The cursor issued by the source continues on the target where it
	// would have continued on the source.
	a, ca, err := src.AuditFeed(ctx, "LA1", time.Time{}, cursor, 100)
	require.NoError(t, err)
	b, cb, err := dst.AuditFeed(ctx, "LA1", time.Time{}, cursor, 100)
	require.NoError(t, err)
	assert.Equal(t, normAudit(a), normAudit(b), "the feed after an old cursor")
	assert.Equal(t, ca, cb)
	// New access records are numbered after the loaded ones: the old
	// cursor's continuation serves them and nothing is served twice.
	require.NoError(t, dst.Audit(ctx, []store.AuditRecord{audit("new", t0.Add(time.Hour), "9449306700", "u1", true, "LA1")}))
	var got []store.AuditRecord
	deadline := time.Now().Add(30 * time.Second)
	for len(got) == 0 && time.Now().Before(deadline) {
		got, _, err = dst.AuditFeed(ctx, "LA1", time.Time{}, cb, 100)
		require.NoError(t, err)
	}
	require.Len(t, got, 1)
	assert.Equal(t, "new", got[0].ID)
}

// normAudit drops nil-versus-empty differences the stores may have.
func normAudit(recs []store.AuditRecord) []store.AuditRecord {
	for i := range recs {
		if len(recs[i].Views) == 0 {
			recs[i].Views = nil
		}
		if len(recs[i].Owners) == 0 {
			recs[i].Owners = nil
		}
	}
	return recs
}

func dump(t *testing.T, s store.Store) []store.Item {
	t.Helper()
	var items []store.Item
	require.NoError(t, s.(store.Dumper).Dump(context.Background(), func(it store.Item) error {
		if it.Audit != nil {
			a := normAudit([]store.AuditRecord{*it.Audit})[0]
			it.Audit = &a
		}
		items = append(items, it)
		return nil
	}))
	return items
}

func loadAll(ctx context.Context, s store.Store, items []store.Item) error {
	i := 0
	return s.(store.Loader).Load(ctx, func() (store.Item, error) {
		if i == len(items) {
			return store.Item{}, io.EOF
		}
		i++
		return items[i-1], nil
	})
}
