package mongo

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	mongodrv "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"cpis/store"
	"cpis/store/storetest"
)

func indexModel(field string, unique bool) mongodrv.IndexModel {
	return mongodrv.IndexModel{Keys: bson.D{{Key: field, Value: 1}}, Options: options.Index().SetUnique(unique)}
}

// A writer that took a sequence number and died holds the feed back until
// the grace; a slow writer whose number was fenced off lands later, once.
func TestFeedFencesAbandonedNumbers(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s, _ := open(t, b, Options{FeedHoleGrace: time.Hour})
			slow, err := s.allocate(ctx, 1) // taken, not yet stored
			require.NoError(t, err)
			require.NoError(t, s.Audit(ctx, []store.AuditRecord{audit("a1", t0, "9449306753", "u1", true, "LA1")}))

			feed, cursor, err := s.AuditFeed(ctx, "LA1", time.Time{}, "", 10)
			require.NoError(t, err)
			assert.Empty(t, feed, "a1 waits behind the missing number")
			assert.Equal(t, "", cursor)
			recs, err := s.AuditBySubject(ctx, "9449306753", time.Time{}, 1000)
			require.NoError(t, err)
			assert.Equal(t, []string{"a1"}, auditIDs(recs), "the access history does not wait")

			s.opts.FeedHoleGrace = time.Nanosecond // the grace has passed
			feed, cursor, err = s.AuditFeed(ctx, "LA1", time.Time{}, cursor, 10)
			require.NoError(t, err)
			assert.Equal(t, []string{"a1"}, auditIDs(feed))

			// The slow writer stores its record under the fenced number.
			docs := []auditDoc{newAuditDoc(audit("a0", t0, "9449306753", "u2", true, "LA1"))}
			docs[0].Seq = slow
			errs, err := s.insertAudit(ctx, docs)
			require.NoError(t, err)
			require.NoError(t, errs[0])
			assert.Greater(t, docs[0].Seq, slow+1, "renumbered above the horizon")

			feed, cursor, err = s.AuditFeed(ctx, "LA1", time.Time{}, cursor, 10)
			require.NoError(t, err)
			assert.Equal(t, []string{"a0"}, auditIDs(feed), "served once, after a1")
			feed, _, err = s.AuditFeed(ctx, "LA1", time.Time{}, cursor, 10)
			require.NoError(t, err)
			assert.Empty(t, feed)
			recs, err = s.AuditBySubject(ctx, "9449306753", time.Time{}, 1000)
			require.NoError(t, err)
			assert.Equal(t, []string{"a1", "a0"}, auditIDs(recs), "the fence marker is no access record")

			// Purge counts access records only, and takes the marker too.
			stats, err := s.Purge(ctx, time.Now().Add(time.Hour))
			require.NoError(t, err)
			assert.Equal(t, 2, stats.Audit)
			n, err := s.audit.CountDocuments(ctx, bson.D{})
			require.NoError(t, err)
			assert.Zero(t, n)
		})
	}
}

// Several processes (stores on one database) writing, one reading page by
// page alternately through each: every record once.
func TestFeedAcrossProcesses(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s1, name := open(t, b, Options{})
			s2, err := Open(ctx, b.uri, name, Options{})
			require.NoError(t, err)
			t.Cleanup(func() { s2.Close() })
			const writers, each = 4, 25
			var wg sync.WaitGroup
			for w := 0; w < writers; w++ {
				s := []*Store{s1, s2}[w%2]
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
			seen := storetest.FollowFeed(t, []store.Store{s1, s2}, "LA1", time.Time{}, 6, done)
			storetest.AssertSeenOnce(t, seen, writers*each)
		})
	}
}

// Callers that arrive while a group commit is in flight share the next one.
func TestAuditGroupCommit(t *testing.T) {
	ctx := context.Background()
	const callers = 20
	var mu sync.Mutex
	var batches []int
	var s *Store
	release := make(chan struct{})
	s, _ = open(t, backend{name: "ferretdb", uri: ferret.URI, ferret: true}, Options{
		AuditWriters: 1,
		BatchObserver: func(n int) {
			mu.Lock()
			batches = append(batches, n)
			first := len(batches) == 1
			mu.Unlock()
			if first {
				<-release // hold the first commit until everyone else queued
			}
		},
	})
	var wg sync.WaitGroup
	call := func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, s.Audit(ctx, []store.AuditRecord{audit(fmt.Sprintf("e%02d", i), t0, "9449306753", "u", true, "LA1")}))
		}()
	}
	call(0)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(batches) == 1
	}, 10*time.Second, time.Millisecond, "the first commit started")
	for i := 1; i < callers; i++ {
		call(i)
	}
	require.Eventually(t, func() bool { return len(s.auditq) == callers-1 }, 10*time.Second, time.Millisecond, "the others queued")
	close(release)
	wg.Wait()
	assert.Equal(t, []int{1, callers - 1}, batches)
	recs, err := s.AuditBySubject(ctx, "9449306753", time.Time{}, 1000)
	require.NoError(t, err)
	assert.Len(t, recs, callers)
}
