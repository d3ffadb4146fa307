package mongo

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"cpis/store"
)

// TestOpenBackfillsPeriodStart: plans written by a release that did not
// keep the period start (documents with no start field) are given it when
// the store is opened, computed from the body as the server computes it for
// a new write, so _sort=date orders them with the others and none is left
// among the records with no start, or dropped.
func TestOpenBackfillsPeriodStart(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			s, name := open(t, b, Options{})
			ctx := context.Background()
			starts := map[string]string{"p1": "2024", "p2": "2024-06", "p3": "2024-06-01", "p4": "2024-05-31T22:30:00-01:00"}
			for id, st := range starts {
				r := plan(id, 1, "9449306753", "LA1")
				r.Body = []byte(fmt.Sprintf(`{"resourceType":"EpisodeOfCare","id":%q,"period":{"start":%q}}`, id, st))
				r.Start = store.PeriodStart(r.Body)
				require.NoError(t, s.Commit(ctx, []store.Write{{Record: r}}))
			}
			org := store.Record{Type: "Organization", ID: "o1", Version: 1, Updated: t0, Owner: "LA1", Body: []byte(`{"resourceType":"Organization"}`)}
			require.NoError(t, s.Commit(ctx, []store.Write{{Record: org}}))
			// As the older release wrote them: no start anywhere.
			_, err := s.res.UpdateMany(ctx, bson.D{}, bson.D{{Key: "$unset", Value: bson.D{{Key: "start", Value: ""}, {Key: "history.0.start", Value: ""}}}})
			require.NoError(t, err)
			n, err := s.res.CountDocuments(ctx, bson.D{{Key: "start", Value: bson.D{{Key: "$exists", Value: true}}}})
			require.NoError(t, err)
			require.Zero(t, n, "the documents are as an older release left them")
			require.NoError(t, s.Close())

			s2, err := Open(ctx, b.uri, name, Options{})
			require.NoError(t, err)
			defer s2.Close()
			want := map[string]time.Time{
				"p1": time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
				"p2": time.Date(2024, 5, 31, 23, 0, 0, 0, time.UTC), // London midnight in summer time
				"p3": time.Date(2024, 5, 31, 23, 0, 0, 0, time.UTC),
				"p4": time.Date(2024, 5, 31, 23, 30, 0, 0, time.UTC),
			}
			for id, st := range want {
				rec, err := s2.Get(ctx, "Flag", id)
				require.NoError(t, err)
				assert.True(t, st.Equal(rec.Start), "%s: %v, want %v", id, rec.Start, st)
			}
			o, err := s2.Get(ctx, "Organization", "o1")
			require.NoError(t, err)
			assert.True(t, o.Start.IsZero())
			for _, c := range []struct {
				sort store.Sort
				want []string
			}{
				{store.SortStart, []string{"p1", "p2", "p3", "p4"}},
				{store.SortStartDesc, []string{"p4", "p3", "p2", "p1"}},
			} {
				recs, total, err := s2.Search(ctx, store.Query{Type: "Flag", Owner: "LA1", Sort: c.sort, Limit: 10, Count: true})
				require.NoError(t, err)
				assert.Equal(t, c.want, recordIDs(recs))
				assert.Equal(t, 4, total)
			}
			// A dump of the backfilled store carries the start it was given.
			var dumped []store.Record
			require.NoError(t, s2.Dump(ctx, func(it store.Item) error {
				if len(it.Versions) > 0 {
					dumped = append(dumped, it.Versions[len(it.Versions)-1])
				}
				return nil
			}))
			for _, r := range dumped {
				if st, ok := want[r.ID]; ok {
					assert.True(t, st.Equal(r.Start), "%s dumped with its start", r.ID)
				}
			}
		})
	}
}
