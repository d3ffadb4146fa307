package sqlite_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"cpis/store"
	"cpis/store/sqlite"
	"cpis/store/storetest"
)

func TestSubscriptionsConformance(t *testing.T) {
	dirs := map[store.Store]string{}
	storetest.RunSubscriptions(t, storetest.Harness{
		Open: func(t *testing.T) store.Store {
			dir := t.TempDir()
			s, err := sqlite.Open(dir, sqlite.Options{})
			require.NoError(t, err)
			dirs[s] = dir
			return s
		},
		Reopen: func(t *testing.T, s store.Store) store.Store {
			dir := dirs[s]
			require.NoError(t, s.Close())
			s2, err := sqlite.Open(dir, sqlite.Options{})
			require.NoError(t, err)
			return s2
		},
	}, nil)
}

// BenchmarkAppendSubEvents: one feed page's events numbered in the outbox
// (1,000 events, the delivery's page), as the writer runs it beside the
// audit's commits; us/event is wall time, cpu-us/event the process's CPU.
//
//	go test ./store/sqlite -run '^$' -bench AppendSubEvents
func BenchmarkAppendSubEvents(b *testing.B) {
	s, err := sqlite.Open(b.TempDir(), sqlite.Options{})
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
	cpu0 := processCPU()
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
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N)/page, "cpu-us/event")
}

// processCPU is the process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
