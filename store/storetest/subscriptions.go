package storetest

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

// RunSubscriptions runs the suite of the notification outbox
// (store.Subscriptions). twin, if set, opens a second store on the same
// database, as a second server process would (MongoDB); nil where a
// database has one process (SQLite).
func RunSubscriptions(t *testing.T, h Harness, twin func(t *testing.T, s store.Store) store.Store) {
	t.Run("crud", func(t *testing.T) { testSubCRUD(t, h) })
	t.Run("outbox", func(t *testing.T) { testSubOutbox(t, h) })
	t.Run("lease-one-winner", func(t *testing.T) { testSubLeaseOneWinner(t, h, twin) })
	t.Run("feed-heads", func(t *testing.T) { testSubFeedHeads(t, h) })
	t.Run("prune", func(t *testing.T) { testSubPrune(t, h) })
	t.Run("page-sizes", func(t *testing.T) { testSubPageSizes(t, h) })
}

// testSubPageSizes: pages of every size up to a full delivery page (and
// past it) are numbered exactly as given, however a backend splits them
// into statements.
func testSubPageSizes(t *testing.T, h Harness) {
	ctx := context.Background()
	s := open(t, h)
	ss := subs(t, s)
	require.NoError(t, ss.PutSubscription(ctx, newSub("s1", "LA1"), 0))
	a, held, err := ss.ClaimSubscription(ctx, "s1", "A", t0, time.Minute)
	require.NoError(t, err)
	require.True(t, held)
	var all []store.SubEvent
	cursor := ""
	for _, size := range []int{1, 19, 20, 21, 47, 100, 150, 0, 3, 1000} {
		var evs []store.SubEvent
		for i := 0; i < size; i++ {
			n := int64(len(all) + len(evs) + 1)
			evs = append(evs, store.SubEvent{Number: n, Seq: 3 * n, Recorded: t0.Add(time.Duration(n) * time.Millisecond), ID: fmt.Sprintf("a%d", n)})
		}
		next := fmt.Sprintf("c%d", len(all)+size)
		if size == 0 {
			next += "-empty"
		}
		require.NoError(t, ss.AppendSubEvents(ctx, "s1", "A", a.Epoch, cursor, next, evs), "a page of %d", size)
		all, cursor = append(all, evs...), next
	}
	var got []store.SubEvent
	for after := int64(0); ; {
		page, err := ss.SubEvents(ctx, "s1", after, 64)
		require.NoError(t, err)
		if len(page) == 0 {
			break
		}
		got = append(got, page...)
		after = page[len(page)-1].Number
	}
	assert.Equal(t, all, got)
	cur, err := ss.GetSubscription(ctx, "s1")
	require.NoError(t, err)
	assert.Equal(t, int64(len(all)), cur.Events)
	assert.Equal(t, cursor, cur.Cursor)
}

func subs(t *testing.T, s store.Store) store.Subscriptions {
	t.Helper()
	ss, ok := s.(store.Subscriptions)
	require.True(t, ok, "%T must implement store.Subscriptions", s)
	return ss
}

func newSub(id, owner string) store.Subscription {
	return store.Subscription{ID: id, Owner: owner, Version: 1, Updated: t0, Start: t0.Add(123 * time.Nanosecond), Status: "requested",
		Body: []byte(fmt.Sprintf(`{"resourceType":"Subscription","id":%q}`, id))}
}

func testSubCRUD(t *testing.T, h Harness) {
	ctx := context.Background()
	s := open(t, h)
	ss := subs(t, s)
	require.NoError(t, ss.PutSubscription(ctx, newSub("s1", "LA1"), 0))
	require.NoError(t, ss.PutSubscription(ctx, newSub("s2", "LA2"), 0))
	require.NoError(t, ss.PutSubscription(ctx, newSub("s3", "LA1"), 0))
	assert.ErrorIs(t, ss.PutSubscription(ctx, newSub("s1", "LA2"), 0), store.ErrVersionConflict, "an id is created once")

	got, err := ss.GetSubscription(ctx, "s1")
	require.NoError(t, err)
	assert.Equal(t, "LA1", got.Owner)
	assert.Equal(t, t0.Add(123*time.Nanosecond), got.Start, "the start is kept to the nanosecond: the feed starts there")
	assert.Equal(t, "requested", got.Status)

	mine, err := ss.ListSubscriptions(ctx, "LA1")
	require.NoError(t, err)
	require.Len(t, mine, 2)
	assert.Equal(t, "s1", mine[0].ID)
	assert.Equal(t, "s3", mine[1].ID)
	all, err := ss.ListSubscriptions(ctx, "")
	require.NoError(t, err)
	assert.Len(t, all, 3)

	up := got
	up.Version, up.Status, up.Body = 2, "off", []byte(`{"resourceType":"Subscription","id":"s1","status":"off"}`)
	require.NoError(t, ss.PutSubscription(ctx, up, 1))
	assert.ErrorIs(t, ss.PutSubscription(ctx, up, 1), store.ErrVersionConflict, "a stale version is refused")
	got, err = ss.GetSubscription(ctx, "s1")
	require.NoError(t, err)
	assert.Equal(t, int64(2), got.Version)
	assert.Equal(t, "off", got.Status)
	assert.JSONEq(t, string(up.Body), string(got.Body))

	require.NoError(t, ss.DeleteSubscription(ctx, "s1"))
	_, err = ss.GetSubscription(ctx, "s1")
	assert.ErrorIs(t, err, store.ErrNotFound)
	assert.ErrorIs(t, ss.DeleteSubscription(ctx, "s1"), store.ErrNotFound)
	assert.ErrorIs(t, ss.PutSubscription(ctx, up, 2), store.ErrNotFound)
}

func testSubOutbox(t *testing.T, h Harness) {
	ctx := context.Background()
	s := open(t, h)
	ss := subs(t, s)
	require.NoError(t, ss.PutSubscription(ctx, newSub("s1", "LA1"), 0))
	ttl := 10 * time.Second

	a, held, err := ss.ClaimSubscription(ctx, "s1", "A", t0, ttl)
	require.NoError(t, err)
	require.True(t, held, "an unheld lease is taken")
	_, held, err = ss.ClaimSubscription(ctx, "s1", "B", t0.Add(time.Second), ttl)
	require.NoError(t, err)
	assert.False(t, held, "a live lease is not taken over")
	a2, held, err := ss.ClaimSubscription(ctx, "s1", "A", t0.Add(2*time.Second), ttl)
	require.NoError(t, err)
	require.True(t, held, "the holder renews")
	assert.Equal(t, a.Epoch, a2.Epoch, "a renewal keeps the epoch")

	evs := []store.SubEvent{{Number: 1, Seq: 10, Recorded: t0, ID: "a10"}, {Number: 2, Seq: 12, Recorded: t0, ID: "a12"}, {Number: 3, Seq: 15, Recorded: t0}}
	require.NoError(t, ss.AppendSubEvents(ctx, "s1", "A", a.Epoch, "", "c3", evs))
	assert.ErrorIs(t, ss.AppendSubEvents(ctx, "s1", "A", a.Epoch, "", "c9", evs), store.ErrVersionConflict,
		"a page numbered twice (a stale cursor) is refused: numbers have no gaps and no repeats")
	got, err := ss.SubEvents(ctx, "s1", 0, 10)
	require.NoError(t, err)
	assert.Equal(t, evs, got)
	got, err = ss.SubEvents(ctx, "s1", 1, 1)
	require.NoError(t, err)
	assert.Equal(t, evs[1:2], got)

	d := store.Delivery{Status: "active", Acked: 2, LastSent: t0.Add(time.Second)}
	assert.ErrorIs(t, ss.SetSubDelivery(ctx, "s1", "B", a.Epoch, 1, d), store.ErrVersionConflict, "only the holder records deliveries")
	require.NoError(t, ss.SetSubDelivery(ctx, "s1", "A", a.Epoch, 1, d))

	// The LA updates its subscription: the holder's outcome for the old
	// version is refused, the outbox stays.
	up, err := ss.GetSubscription(ctx, "s1")
	require.NoError(t, err)
	up.Version, up.Status = 2, "requested"
	require.NoError(t, ss.PutSubscription(ctx, up, 1))
	assert.ErrorIs(t, ss.SetSubDelivery(ctx, "s1", "A", a.Epoch, 1, store.Delivery{Status: "active", Acked: 3}), store.ErrVersionConflict)

	// After a restart the outbox is where it was.
	if h.Reopen != nil {
		s = h.Reopen(t, s)
		t.Cleanup(func() { s.Close() })
		ss = subs(t, s)
	}
	cur, err := ss.GetSubscription(ctx, "s1")
	require.NoError(t, err)
	assert.Equal(t, "c3", cur.Cursor)
	assert.Equal(t, int64(3), cur.Events)
	assert.Equal(t, int64(2), cur.Acked)
	assert.Equal(t, "requested", cur.Status)
	assert.Equal(t, "A", cur.Holder)

	// A's lease runs out; B takes over with a new epoch and A is fenced off.
	b, held, err := ss.ClaimSubscription(ctx, "s1", "B", t0.Add(time.Minute), ttl)
	require.NoError(t, err)
	require.True(t, held, "an expired lease is taken over")
	assert.Greater(t, b.Epoch, a.Epoch)
	assert.ErrorIs(t, ss.AppendSubEvents(ctx, "s1", "A", a.Epoch, "c3", "c4", []store.SubEvent{{Number: 4, Seq: 20, Recorded: t0}}),
		store.ErrVersionConflict, "a holder that lost its lease numbers nothing")
	require.NoError(t, ss.AppendSubEvents(ctx, "s1", "B", b.Epoch, "c3", "c4", []store.SubEvent{{Number: 4, Seq: 20, Recorded: t0}}))
	require.NoError(t, ss.AppendSubEvents(ctx, "s1", "B", b.Epoch, "c4", "c5", nil), "an empty page moves the cursor only")
	cur, err = ss.GetSubscription(ctx, "s1")
	require.NoError(t, err)
	assert.Equal(t, "c5", cur.Cursor)
	assert.Equal(t, int64(4), cur.Events)

	require.NoError(t, ss.DeleteSubscription(ctx, "s1"))
	got, err = ss.SubEvents(ctx, "s1", 0, 10)
	if err == nil {
		assert.Empty(t, got, "a deleted subscription has no events")
	} else {
		assert.ErrorIs(t, err, store.ErrNotFound)
	}
	_, _, err = ss.ClaimSubscription(ctx, "s1", "B", t0.Add(time.Minute), ttl)
	assert.ErrorIs(t, err, store.ErrNotFound, "a deleted subscription cannot be claimed")
}

// testSubLeaseOneWinner: processes racing for an expired lease, exactly one
// wins each round.
func testSubLeaseOneWinner(t *testing.T, h Harness, twin func(t *testing.T, s store.Store) store.Store) {
	ctx := context.Background()
	s := open(t, h)
	stores := []store.Store{s}
	if twin != nil {
		s2 := twin(t, s)
		t.Cleanup(func() { s2.Close() })
		stores = append(stores, s2)
	}
	require.NoError(t, subs(t, s).PutSubscription(ctx, newSub("s1", "LA1"), 0))
	ttl := time.Second
	for round := 0; round < 5; round++ {
		now := t0.Add(time.Duration(round) * time.Minute) // every lease has expired
		var wg sync.WaitGroup
		var mu sync.Mutex
		winners := 0
		for i := 0; i < 6; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				_, held, err := subs(t, stores[i%len(stores)]).ClaimSubscription(ctx, "s1", fmt.Sprintf("p%d", i), now, ttl)
				if err != nil && !errors.Is(err, store.ErrVersionConflict) {
					t.Error(err)
				}
				if held {
					mu.Lock()
					winners++
					mu.Unlock()
				}
			}(i)
		}
		wg.Wait()
		assert.Equal(t, 1, winners, "round %d: exactly one process holds the lease", round)
	}
}

// testSubFeedHeads: the heads-only feed read serves exactly the records and
// cursors of AuditFeed, without bodies.
func testSubFeedHeads(t *testing.T, h Harness) {
	ctx := context.Background()
	s := open(t, h)
	ss := subs(t, s)
	var recs []store.AuditRecord
	for i := 0; i < 7; i++ {
		owners := []string{"LA1"}
		if i%3 == 1 {
			owners = []string{"LA2"}
		}
		if i%3 == 2 {
			owners = []string{"LA1", "LA2"}
		}
		recs = append(recs, audit(fmt.Sprintf("a%d", i), t0.Add(time.Duration(i)*time.Second), "9449306753", "u", i != 5, owners...))
	}
	require.NoError(t, s.Audit(ctx, recs))
	since := t0.Add(time.Second)
	cursor, hcursor := "", ""
	for page := 0; page < 5; page++ {
		full, next, err := s.AuditFeed(ctx, "LA1", since, cursor, 2)
		require.NoError(t, err)
		heads, hnext, err := ss.AuditFeedHeads(ctx, "LA1", since, hcursor, 2)
		require.NoError(t, err)
		require.Len(t, heads, len(full), "page %d", page)
		assert.Equal(t, next, hnext, "the same cursor")
		for i := range full {
			want := full[i]
			want.Body, want.Views, want.Agent = nil, nil, ""
			got := heads[i]
			got.Agent = ""
			assert.Nil(t, got.Body, "no body")
			assert.Equal(t, want, got)
		}
		if len(full) == 0 {
			break
		}
		cursor, hcursor = next, hnext
	}
	_, _, err := ss.AuditFeedHeads(ctx, "LA1", since, "bogus", 2)
	assert.ErrorIs(t, err, store.ErrInvalidCursor)
}

// testSubPrune: only acknowledged events recorded before the cutoff go,
// from the oldest on, so what is held stays one run of numbers.
func testSubPrune(t *testing.T, h Harness) {
	ctx := context.Background()
	s := open(t, h)
	ss := subs(t, s)
	require.NoError(t, ss.PutSubscription(ctx, newSub("s1", "LA1"), 0))
	require.NoError(t, ss.PutSubscription(ctx, newSub("s2", "LA1"), 0))
	a, held, err := ss.ClaimSubscription(ctx, "s1", "A", t0, time.Minute)
	require.NoError(t, err)
	require.True(t, held)
	first, err := ss.FirstSubEvent(ctx, "s1")
	require.NoError(t, err)
	assert.Zero(t, first, "none held before any is numbered")
	var evs []store.SubEvent
	for i := 1; i <= 6; i++ {
		at := t0.Add(time.Duration(i) * time.Hour)
		if i == 3 {
			at = t0.Add(10 * time.Hour) // recorded after the cutoff: the run stops there
		}
		evs = append(evs, store.SubEvent{Number: int64(i), Seq: int64(10 + i), Recorded: at, ID: fmt.Sprintf("a%d", i)})
	}
	require.NoError(t, ss.AppendSubEvents(ctx, "s1", "A", a.Epoch, "", "c6", evs))
	require.NoError(t, ss.SetSubDelivery(ctx, "s1", "A", a.Epoch, 1, store.Delivery{Status: "active", Acked: 5}))

	cutoff := t0.Add(8 * time.Hour)
	n, err := ss.PruneSubEvents(ctx, cutoff)
	require.NoError(t, err)
	assert.Equal(t, 2, n, "events 1 and 2: acknowledged and old; 3 is recent, so 4 and 5 wait behind it")
	first, err = ss.FirstSubEvent(ctx, "s1")
	require.NoError(t, err)
	assert.Equal(t, int64(3), first)
	got, err := ss.SubEvents(ctx, "s1", 0, 10)
	require.NoError(t, err)
	assert.Equal(t, evs[2:], got)

	n, err = ss.PruneSubEvents(ctx, t0.Add(100*time.Hour))
	require.NoError(t, err)
	assert.Equal(t, 3, n, "3 to 5 once all are old; 6 is not acknowledged and stays")
	first, err = ss.FirstSubEvent(ctx, "s1")
	require.NoError(t, err)
	assert.Equal(t, int64(6), first)
	n, err = ss.PruneSubEvents(ctx, t0.Add(100*time.Hour))
	require.NoError(t, err)
	assert.Zero(t, n, "pruning again removes nothing")
	cur, err := ss.GetSubscription(ctx, "s1")
	require.NoError(t, err)
	assert.Equal(t, int64(6), cur.Events, "the outbox's numbering is untouched")
}
