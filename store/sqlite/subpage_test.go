package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
)

func subEvents(first, last int64, at time.Time) []store.SubEvent {
	var evs []store.SubEvent
	for n := first; n <= last; n++ {
		evs = append(evs, store.SubEvent{Number: n, Seq: 1000 + 3*n, Recorded: at.Add(time.Duration(n) * time.Millisecond).UTC(), ID: fmt.Sprintf("a-%d", n)})
	}
	return evs
}

// FuzzSubPageRoundTrip: a page gives back exactly the events packed, from
// any number on; a page cut or grown by any byte reads as damaged, never
// as fewer or other events.
func FuzzSubPageRoundTrip(f *testing.F) {
	f.Add(int64(1), uint8(5), int64(-3), int64(7), "a-1", uint16(0))
	f.Add(int64(99), uint8(100), int64(1<<40), int64(-1<<50), "", uint16(3))
	f.Fuzz(func(t *testing.T, first int64, n uint8, seqStep, recStep int64, id string, cut uint16) {
		if first < 1 || first > 1<<50 || n == 0 {
			t.Skip()
		}
		evs := make([]store.SubEvent, n)
		for i := range evs {
			evs[i] = store.SubEvent{Number: first + int64(i), Seq: seqStep * int64(i), Recorded: time.Unix(0, recStep*int64(i)).UTC(), ID: id}
		}
		last := first + int64(n) - 1
		blob, err := packSubEvents(evs)
		require.NoError(t, err)
		for from := first; from <= last+1; from++ {
			got, err := unpackSubEvents(nil, blob, first, last, from)
			require.NoError(t, err)
			require.Equal(t, evs[from-first:], append([]store.SubEvent{}, got...))
		}
		short := blob[:int(cut)%len(blob)]
		_, err = unpackSubEvents(nil, short, first, last, first)
		assert.ErrorIs(t, err, errDamaged, "cut to %d of %d bytes", len(short), len(blob))
		_, err = unpackSubEvents(nil, append(blob, 0), first, last, first)
		assert.ErrorIs(t, err, errDamaged, "a byte more")
		_, err = unpackSubEvents(nil, blob, first, last+1, first)
		assert.ErrorIs(t, err, errDamaged, "fewer events than numbers")
	})
}

func TestSubPageRefusesAGap(t *testing.T) {
	evs := subEvents(1, 3, time.Now())
	evs[2].Number = 4
	_, err := packSubEvents(evs)
	assert.Error(t, err)
}

// TestSubPageMustFollowTheLast: a page whose numbers do not follow the
// subscription's last is refused (it would overlap a page or leave a gap),
// and changes nothing.
func TestSubPageMustFollowTheLast(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	require.NoError(t, s.PutSubscription(ctx, store.Subscription{ID: "s1", Owner: "LA1", Version: 1, Updated: now, Start: now, Status: "active", Body: []byte(`{}`)}, 0))
	sub, _, err := s.ClaimSubscription(ctx, "s1", "A", now, time.Minute)
	require.NoError(t, err)
	require.NoError(t, s.AppendSubEvents(ctx, "s1", "A", sub.Epoch, "", "c1", subEvents(1, 5, now)))
	for _, evs := range [][]store.SubEvent{subEvents(5, 8, now), subEvents(7, 8, now)} {
		assert.ErrorIs(t, s.AppendSubEvents(ctx, "s1", "A", sub.Epoch, "c1", "c2", evs), store.ErrVersionConflict, "from %d", evs[0].Number)
	}
	cur, err := s.GetSubscription(ctx, "s1")
	require.NoError(t, err)
	assert.Equal(t, int64(5), cur.Events)
	assert.Equal(t, "c1", cur.Cursor)
	got, err := s.SubEvents(ctx, "s1", 0, 100)
	require.NoError(t, err)
	assert.Equal(t, subEvents(1, 5, now), got)
}

// TestSubEventsFromADamagedPage: a page whose blob no longer holds its
// run of numbers is answered as an error, not as no events (which would
// read as nothing to deliver).
func TestSubEventsFromADamagedPage(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	require.NoError(t, err)
	ctx := context.Background()
	now := time.Now()
	require.NoError(t, s.PutSubscription(ctx, store.Subscription{ID: "s1", Owner: "LA1", Version: 1, Updated: now, Start: now, Status: "active", Body: []byte(`{}`)}, 0))
	sub, held, err := s.ClaimSubscription(ctx, "s1", "A", now, time.Minute)
	require.NoError(t, err)
	require.True(t, held)
	require.NoError(t, s.AppendSubEvents(ctx, "s1", "A", sub.Epoch, "", "c1", subEvents(1, 10, now)))
	require.NoError(t, s.Close())
	dbExec(t, filepath.Join(dir, FileName), `UPDATE sub_pages SET events = substr(events, 1, length(events) - 4)`)

	s, err = Open(dir, Options{})
	require.NoError(t, err)
	defer s.Close()
	_, err = s.SubEvents(ctx, "s1", 0, 100)
	assert.ErrorIs(t, err, errDamaged)
	_, err = s.SubEvents(ctx, "s1", 9, 100)
	assert.ErrorIs(t, err, errDamaged, "the page holding the number asked is read whole")
}

// TestMigratePacksSubEvents writes a database in layout 13 (an event per
// row) with two subscriptions' events, one of them held from 3 on (1 and 2
// pruned) across more than one page, and with events numbered before their
// ids were kept; opened, every event reads back as it was, from any number.
func TestMigratePacksSubEvents(t *testing.T) {
	dir := t.TempDir()
	db := layoutDB(t, dir, 13)
	at := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	want := map[string][]store.SubEvent{"s1": subEvents(3, 257, at), "s2": subEvents(1, 4, at)}
	want["s2"][1].ID = "" // numbered before ids were kept
	for id, evs := range want {
		_, err := db.Exec(`INSERT INTO subscriptions(id, owner, version, updated, start, status, events, acked, body) VALUES (?, 'LA1', 1, 0, 0, 'active', ?, 0, '{}')`,
			id, evs[len(evs)-1].Number)
		require.NoError(t, err)
		for _, e := range evs {
			_, err := db.Exec(`INSERT INTO sub_events(sub, number, seq, recorded, aid) VALUES (?, ?, ?, ?, ?)`, id, e.Number, e.Seq, e.Recorded.UnixNano(), e.ID)
			require.NoError(t, err)
		}
	}
	require.NoError(t, db.Close())

	s, err := Open(dir, Options{})
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	for id, evs := range want {
		first, err := s.FirstSubEvent(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, evs[0].Number, first, id)
		for _, after := range []int64{0, evs[0].Number, evs[len(evs)/2].Number, evs[len(evs)-1].Number} {
			got, err := s.SubEvents(ctx, id, after, 1000)
			require.NoError(t, err)
			i := max(0, int(after-evs[0].Number+1))
			assert.Equal(t, evs[i:], append([]store.SubEvent{}, got...), "%s after %d", id, after)
		}
		got, err := s.SubEvents(ctx, id, 0, 7)
		require.NoError(t, err)
		assert.Equal(t, evs[:min(7, len(evs))], got, "%s: a limit", id)
	}
	var pages int
	require.NoError(t, s.r.QueryRow(`SELECT count(*) FROM sub_pages WHERE sub = 's1'`).Scan(&pages))
	assert.Equal(t, 3, pages, "255 events in pages of at most 100")
	var left int
	require.NoError(t, s.r.QueryRow(`SELECT count(*) FROM sqlite_schema WHERE name = 'sub_events'`).Scan(&left))
	assert.Zero(t, left, "the table of an event per row is gone")
}

// BenchmarkAppendSubEvents: one feed page's events numbered in the outbox
// (1,000 events, the delivery's page), as the writer runs it beside the
// audit's commits; us/event is wall time, cpu-us/event the process's CPU.
//
//	go test ./store/sqlite -run '^$' -bench AppendSubEvents
func BenchmarkAppendSubEvents(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	require.NoError(b, err)
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	require.NoError(b, s.PutSubscription(ctx, store.Subscription{ID: "6f1c2a4e-0d7b-4f0e-9a53-2b8c1d3e4f50", Owner: "LA001", Version: 1,
		Updated: now, Start: now, Status: "active", Body: []byte(`{"resourceType":"Subscription"}`)}, 0))
	sub, held, err := s.ClaimSubscription(ctx, "6f1c2a4e-0d7b-4f0e-9a53-2b8c1d3e4f50", "p1", now, time.Hour)
	require.NoError(b, err)
	require.True(b, held)
	cursor := sub.Cursor
	var number int64
	const page = 1000
	b.ResetTimer()
	cpu0 := cpuNanos()
	for i := 0; i < b.N; i++ {
		evs := make([]store.SubEvent, page)
		for j := range evs {
			number++
			evs[j] = store.SubEvent{Number: number, Seq: number * 3, Recorded: now, ID: fmt.Sprintf("4c5d6e7f-8a9b-4c0d-9e1f-%012d", number)}
		}
		next := fmt.Sprint(number * 3)
		require.NoError(b, s.AppendSubEvents(ctx, sub.ID, "p1", sub.Epoch, cursor, next, evs))
		cursor = next
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/page, "us/event")
	b.ReportMetric(float64(cpuNanos()-cpu0)/1e3/float64(b.N)/page, "cpu-us/event")
}
