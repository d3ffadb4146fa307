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

// TestFeedStartsAtSince: the feed's first page starts at the first record
// since the date (it no longer walks the older ones), and still serves
// every record since, in sequence order, when the sequence and the recorded
// times disagree (records committed out of time order, as the seed's
// parallel batches and slow requests make them).
func TestFeedStartsAtSince(t *testing.T) {
	s, err := Open(t.TempDir(), Options{CheckTimeout: -1})
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	since := time.Now().Add(-time.Hour)
	var recs []store.AuditRecord
	for i := 0; i < 3000; i++ { // a year of older records
		recs = append(recs, store.AuditRecord{ID: fmt.Sprint("old", i), Recorded: since.Add(-time.Duration(3000-i) * time.Minute), Subject: "9449306753", Agent: "u", Notify: true, Owners: []string{"LA001"}, Body: []byte(`{}`)})
	}
	require.NoError(t, s.Audit(ctx, recs))
	// In sequence order: one since, one just before, two since, and one
	// before again (committed late).
	var want []string
	for i, d := range []time.Duration{time.Minute, -time.Second, 2 * time.Minute, time.Second, -time.Minute} {
		id := fmt.Sprint("e", i)
		require.NoError(t, s.Audit(ctx, []store.AuditRecord{{ID: id, Recorded: since.Add(d), Subject: "9449306753", Agent: "u", Notify: true, Owners: []string{"LA001"}, Body: []byte(`{}`)}}))
		if d >= 0 {
			want = append(want, id)
		}
	}
	// Other authorities' records don't show.
	require.NoError(t, s.Audit(ctx, []store.AuditRecord{{ID: "other", Recorded: since, Subject: "9449306761", Agent: "u", Notify: true, Owners: []string{"LA002"}, Body: []byte(`{}`)}}))
	var got []string
	cursor := ""
	for page := 0; page < 10; page++ {
		recs, next, err := s.AuditFeed(ctx, "LA001", since, cursor, 2)
		require.NoError(t, err)
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			got = append(got, r.ID)
		}
		cursor = next
	}
	assert.Equal(t, want, got)
	n, err := s.AuditFeedTotal(ctx, "LA001", since)
	require.NoError(t, err)
	assert.Equal(t, len(want), n)
	// No record since: an empty page, the cursor kept.
	recs, next, err := s.AuditFeed(ctx, "LA001", time.Now().Add(time.Hour), "s5", 2)
	require.NoError(t, err)
	assert.Empty(t, recs)
	assert.Equal(t, "s5", next)
}
