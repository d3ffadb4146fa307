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

// TestSweeperPurgesExpiredPlans runs the background sweeper against a real
// store, from two "processes" at once, and checks it purges a plan that
// ended before the retention window with its Flag, history and access
// history, and keeps the rest.
func TestSweeperPurgesExpiredPlans(t *testing.T) {
	st, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	require.NoError(t, err)
	defer st.Close()
	ctx := context.Background()
	now := time.Now().UTC()
	put := func(id, subject string, end time.Time) {
		for v := int64(1); v <= 2; v++ {
			require.NoError(t, st.Commit(ctx, []store.Write{{Expect: v - 1, Record: store.Record{
				Type: "EpisodeOfCare", ID: id, Version: v, Updated: now, Owner: "LA001", Subject: subject, End: end,
				Body: []byte(`{}`), Derived: &store.Derived{Type: "Flag", Body: []byte(`{}`)},
			}}}))
		}
	}
	put("old", "9449306753", now.AddDate(0, 0, -400))
	put("recent", "9449306761", now.AddDate(0, 0, -30))
	require.NoError(t, st.Audit(ctx, []store.AuditRecord{
		{ID: "a1", Recorded: now.AddDate(0, 0, -500), Subject: "9449306753", Agent: "u", Notify: true, Owners: []string{"LA001"}, Body: []byte(`{}`)},
		{ID: "a2", Recorded: now.AddDate(0, 0, -500), Subject: "9449306761", Agent: "u", Notify: true, Owners: []string{"LA001"}, Body: []byte(`{}`)},
	}))

	sctx, cancel := context.WithCancel(ctx)
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	for i := 0; i < 2; i++ {
		go sweep(sctx, st, 365, time.Hour, log)
	}
	assert.Eventually(t, func() bool {
		_, err := st.Get(ctx, "Flag", "old")
		// The access records go in the sweep's next step: wait for it too
		// before cancelling the sweep.
		old, aerr := st.AuditBySubject(ctx, "9449306753", time.Time{}, 1000)
		return err != nil && aerr == nil && len(old) == 0
	}, 15*time.Second, 50*time.Millisecond, "the expired plan is purged")
	cancel()
	for _, typ := range []string{"EpisodeOfCare", "Flag"} {
		_, err := st.History(ctx, typ, "old")
		assert.ErrorIs(t, err, store.ErrNotFound)
		_, err = st.Get(ctx, typ, "recent")
		assert.NoError(t, err)
	}
	old, err := st.AuditBySubject(ctx, "9449306753", time.Time{}, 1000)
	require.NoError(t, err)
	assert.Empty(t, old, "its access history goes with it")
	kept, err := st.AuditBySubject(ctx, "9449306761", time.Time{}, 1000)
	require.NoError(t, err)
	assert.Len(t, kept, 1, "a patient with a retained plan keeps theirs")
}
