package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
)

// countFeed is what the feed's total and first record are by a count of
// the table, for owner since since.
func countFeed(t *testing.T, s *Store, owner string, since time.Time) (int, int64) {
	t.Helper()
	var n int
	var first sql.NullInt64
	require.NoError(t, s.r.QueryRow(`SELECT count(*), min(seq) FROM audit_owner NOT INDEXED WHERE owner = ? AND recorded >= ?`,
		owner, since.UnixNano()).Scan(&n, &first))
	return n, first.Int64
}

// firstPage is the feed's first page's first sequence number (0 if empty).
func firstPage(t *testing.T, s *Store, owner string, since time.Time) int64 {
	t.Helper()
	recs, _, err := s.AuditFeed(context.Background(), owner, since, "", 1)
	require.NoError(t, err)
	if len(recs) == 0 {
		return 0
	}
	return recs[0].Seq
}

// TestFeedMarksMatchACount: the feed's total and its first page, read
// again and again while access records are written (in and out of time
// order, for two authorities, some before the date), are always what a
// count of the table says: the remembered count adds exactly the records
// written after it.
func TestFeedMarksMatchACount(t *testing.T) {
	s, err := Open(t.TempDir(), Options{CheckTimeout: -1})
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	since := time.Now().Add(-time.Hour)
	later := since.Add(10 * time.Minute)
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 60; round++ {
		var recs []store.AuditRecord
		for i := 0; i < r.IntN(4); i++ {
			owners := []string{"LA001"}
			if r.IntN(3) == 0 {
				owners = []string{"LA002", "LA001"}
			}
			at := since.Add(time.Duration(r.IntN(40)-20) * time.Minute) // some before the date
			recs = append(recs, store.AuditRecord{ID: fmt.Sprint("e", round, "-", i), Recorded: at, Subject: "9449306753", Agent: "u",
				Notify: r.IntN(5) > 0, Owners: owners, Body: []byte(`{}`)})
		}
		if len(recs) > 0 {
			require.NoError(t, s.Audit(ctx, recs))
		}
		for _, owner := range []string{"LA001", "LA002", "LA003"} {
			for _, from := range []time.Time{since, later} {
				wantN, wantFirst := countFeed(t, s, owner, from)
				n, err := s.AuditFeedTotal(ctx, owner, from)
				require.NoError(t, err)
				require.Equal(t, wantN, n, "round %d: %s's total since %v", round, owner, from)
				require.Equal(t, wantFirst, firstPage(t, s, owner, from), "round %d: %s's first page since %v", round, owner, from)
			}
		}
	}
	n, _ := countFeed(t, s, "LA001", since)
	assert.Positive(t, n, "the test wrote records since the date")
}

// TestHazard_FeedTotalCountsSweptRecords: a local authority's feed total
// and first page, remembered between pages, must not keep counting or
// start at access records the retention sweep has removed, whether the
// sweep ran in this server or in another process on the same database (a
// second Store on the same file: SQLite's locks are the same). The feed
// would announce records it no longer serves.
func TestHazard_FeedTotalCountsSweptRecords(t *testing.T) {
	for _, where := range []string{"this process", "another process"} {
		t.Run(where, func(t *testing.T) {
			dir := t.TempDir()
			server, err := Open(dir, Options{CheckTimeout: -1})
			require.NoError(t, err)
			defer server.Close()
			ctx := context.Background()
			putPlan(t, server, "kept") // 9449306753 keeps its access history
			cutoff := time.Now().Add(-time.Hour)
			since := cutoff.Add(-time.Hour)
			var recs []store.AuditRecord
			for i := 0; i < 10; i++ {
				// Due for the sweep: recorded since the date but before
				// the cutoff, about a child with no record left.
				recs = append(recs, store.AuditRecord{ID: fmt.Sprint("due", i), Recorded: since.Add(time.Duration(i) * time.Minute),
					Subject: "9000000009", Agent: "u", Notify: true, Owners: []string{"LA001"}, Body: []byte(`{}`)})
			}
			for i := 0; i < 5; i++ {
				recs = append(recs, store.AuditRecord{ID: fmt.Sprint("kept", i), Recorded: since.Add(time.Duration(i) * time.Minute),
					Subject: "9449306753", Agent: "u", Notify: true, Owners: []string{"LA001"}, Body: []byte(`{}`)})
			}
			require.NoError(t, server.Audit(ctx, recs))
			n, err := server.AuditFeedTotal(ctx, "LA001", since)
			require.NoError(t, err)
			require.Equal(t, 15, n)

			sweeper := server
			if where == "another process" {
				sweeper, err = Open(dir, Options{CheckTimeout: -1})
				require.NoError(t, err)
				defer sweeper.Close()
			}
			stats, err := sweeper.Purge(ctx, cutoff)
			require.NoError(t, err)
			require.Equal(t, 10, stats.Audit)
			// And one recorded after, counted on top.
			require.NoError(t, server.Audit(ctx, []store.AuditRecord{{ID: "new", Recorded: time.Now(),
				Subject: "9449306753", Agent: "u", Notify: true, Owners: []string{"LA001"}, Body: []byte(`{}`)}}))

			wantN, wantFirst := countFeed(t, server, "LA001", since)
			require.Equal(t, 6, wantN)
			n, err = server.AuditFeedTotal(ctx, "LA001", since)
			require.NoError(t, err)
			assert.Equal(t, wantN, n, "the total after the sweep")
			recs, _, err = server.AuditFeed(ctx, "LA001", since, "", 50)
			require.NoError(t, err)
			require.Len(t, recs, 6)
			assert.Equal(t, wantFirst, recs[0].Seq, "the first page starts at the first record left")
		})
	}
}

// TestFeedMarksWhileWriting: totals read while access records are being
// committed never go down and end at the table's count: a remembered count
// adds the rows committed after it, whichever order reads and commits come
// in.
func TestFeedMarksWhileWriting(t *testing.T) {
	s, err := Open(t.TempDir(), Options{CheckTimeout: -1})
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	since := time.Now().Add(-time.Hour)
	const writers, each = 4, 150
	done := make(chan error, writers)
	for w := 0; w < writers; w++ {
		go func() {
			for i := 0; i < each; i++ {
				at := since.Add(time.Duration(i%7-2) * time.Minute) // two in seven before the date
				if err := s.Audit(ctx, []store.AuditRecord{{ID: fmt.Sprint("w", w, "-", i), Recorded: at, Subject: "9449306753",
					Agent: "u", Notify: true, Owners: []string{"LA001"}, Body: []byte(`{}`)}}); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	readErr := make(chan error, 1)
	stop := make(chan struct{})
	go func() {
		last := 0
		for {
			select {
			case <-stop:
				readErr <- nil
				return
			default:
			}
			n, err := s.AuditFeedTotal(ctx, "LA001", since)
			if err == nil && n < last {
				err = fmt.Errorf("the total went down from %d to %d", last, n)
			}
			if err != nil {
				readErr <- err
				return
			}
			last = n
		}
	}()
	for w := 0; w < writers; w++ {
		require.NoError(t, <-done)
	}
	close(stop)
	require.NoError(t, <-readErr)
	want, wantFirst := countFeed(t, s, "LA001", since)
	n, err := s.AuditFeedTotal(ctx, "LA001", since)
	require.NoError(t, err)
	assert.Equal(t, want, n)
	sinceDate := 0
	for i := 0; i < each; i++ {
		if i%7 >= 2 {
			sinceDate++
		}
	}
	assert.Equal(t, writers*sinceDate, want)
	assert.Equal(t, wantFirst, firstPage(t, s, "LA001", since))
}
