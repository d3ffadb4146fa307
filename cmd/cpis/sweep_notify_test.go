package main

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
	"cpis/store/sqlite"
)

// TestSweeperPrunesAcknowledgedSubEvents: the retention sweep removes a
// subscription's outbox events the endpoint acknowledged once they are
// older than retention, and keeps recent ones and unacknowledged ones, so
// a subscription's outbox does not grow for ever.
func TestSweeperPrunesAcknowledgedSubEvents(t *testing.T) {
	st, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	require.NoError(t, err)
	defer st.Close()
	ctx := context.Background()
	now := time.Now().UTC()
	require.NoError(t, st.PutSubscription(ctx, store.Subscription{ID: "s1", Owner: "LA001", Version: 1, Updated: now, Start: now,
		Status: "active", Body: []byte(`{}`)}, 0))
	sub, held, err := st.ClaimSubscription(ctx, "s1", "p1", now, time.Minute)
	require.NoError(t, err)
	require.True(t, held)
	old := now.AddDate(0, 0, -400)
	require.NoError(t, st.AppendSubEvents(ctx, "s1", "p1", sub.Epoch, "", "s4", []store.SubEvent{
		{Number: 1, Seq: 1, Recorded: old}, {Number: 2, Seq: 2, Recorded: old},
		{Number: 3, Seq: 3, Recorded: now.AddDate(0, 0, -1)}, {Number: 4, Seq: 4, Recorded: old},
	}))
	// 1 to 3 acknowledged; 4 is old but not acknowledged.
	require.NoError(t, st.SetSubDelivery(ctx, "s1", "p1", sub.Epoch, 1, store.Delivery{Status: "active", Acked: 3}))

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go sweep(sctx, st, 365, time.Hour, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	assert.Eventually(t, func() bool {
		first, err := st.FirstSubEvent(ctx, "s1")
		return err == nil && first == 3
	}, 15*time.Second, 50*time.Millisecond, "events 1 and 2 are pruned")
	cancel()
	evs, err := st.SubEvents(ctx, "s1", 0, 10)
	require.NoError(t, err)
	require.Len(t, evs, 2)
	assert.Equal(t, []int64{3, 4}, []int64{evs[0].Number, evs[1].Number}, "a recent event and an unacknowledged one stay")
}
