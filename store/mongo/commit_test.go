package mongo

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"cpis/store"
)

func TestIndexesAfterOpen(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s, name := open(t, b, Options{})
			for coll, want := range Indexes() {
				specs, err := s.db.Collection(coll).Indexes().ListSpecifications(ctx)
				require.NoError(t, err)
				got := map[string]bool{}
				for _, sp := range specs {
					got[sp.Name] = true
					if sp.Name == "keys_unique" || sp.Name == "id_unique" {
						require.NotNil(t, sp.Unique, sp.Name)
						assert.True(t, *sp.Unique, sp.Name)
					}
				}
				assert.True(t, got["_id_"], "%s._id_", coll)
				for _, n := range want {
					assert.True(t, got[n], "%s.%s missing", coll, n)
				}
			}
			// Opening again, with data present, is a no-op for the indexes.
			require.NoError(t, s.Commit(ctx, []store.Write{{Record: plan("p1", 1, "9449306753", "LA1", "https://la1.example/id|A1")}}))
			s2, err := Open(ctx, b.uri, name, Options{})
			require.NoError(t, err)
			require.NoError(t, s2.Close())
			s3, err := Open(ctx, b.uri, name, Options{})
			require.NoError(t, err)
			require.NoError(t, s3.Close())
		})
	}
}

func TestMultiRecordCommitRefusedWithoutTransactions(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s, _ := open(t, b, Options{})
			if s.Transactions() {
				t.Skip("this server has transactions; the conformance suite covers multi-record commits here")
			}
			key := "https://la1.example/id|A1"
			require.NoError(t, s.Commit(ctx, []store.Write{{Record: plan("p1", 1, "9449306753", "LA1", key)}}))
			for _, writes := range [][]store.Write{
				{{Record: plan("n1", 1, "9449306753", "LA1")}, {Record: plan("p1", 2, "9449306753", "LA1"), Expect: 1}},
				{{Record: plan("n1", 1, "9449306753", "LA1")}, {Record: plan("n2", 1, "9449306753", "LA1", key)}},
			} {
				err := s.Commit(ctx, writes)
				require.ErrorIs(t, err, store.ErrTransactionsUnsupported)
			}
			for _, id := range []string{"n1", "n2"} {
				_, err := s.Get(ctx, "EpisodeOfCare", id)
				assert.ErrorIs(t, err, store.ErrNotFound, "%s was not written", id)
			}
			hist, err := s.History(ctx, "EpisodeOfCare", "p1")
			require.NoError(t, err)
			assert.Len(t, hist, 1, "p1 was not updated")
			recs, _, err := s.Search(ctx, store.Query{Type: "EpisodeOfCare", Key: key, Limit: 10})
			require.NoError(t, err)
			assert.Equal(t, []string{"p1"}, recordIDs(recs), "the key stays with p1")
		})
	}
}

// Records holding several keys, overlapping but not equal: every key on its
// own must be unique.
func TestOverlappingKeySets(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s, _ := open(t, b, Options{})
			A, B, C := "https://la.example/id|A", "https://la.example/id|B", "https://la.example/id|C"
			require.NoError(t, s.Commit(ctx, []store.Write{{Record: plan("p1", 1, "9449306753", "LA1", A, B)}}))

			err := s.Commit(ctx, []store.Write{{Record: plan("p2", 1, "9449306753", "LA1", C, B)}})
			var ue *store.UniqueError
			require.ErrorAs(t, err, &ue, "create")
			assert.Equal(t, store.UniqueError{Type: "EpisodeOfCare", Key: B, HeldBy: "p1"}, *ue)

			require.NoError(t, s.Commit(ctx, []store.Write{{Record: plan("p2", 1, "9449306753", "LA1", C)}}))
			err = s.Commit(ctx, []store.Write{{Record: plan("p1", 2, "9449306753", "LA1", A, C), Expect: 1}})
			require.ErrorAs(t, err, &ue, "update")
			assert.Equal(t, store.UniqueError{Type: "EpisodeOfCare", Key: C, HeldBy: "p2"}, *ue)

			err = s.Commit(ctx, []store.Write{{Record: plan("p1", 1, "9449306753", "LA1", A, C)}})
			assert.ErrorIs(t, err, store.ErrVersionConflict, "a stale version is reported before a held key")

			err = s.Commit(ctx, []store.Write{{Record: plan("p3", 1, "9449306753", "LA1", "x|1", "x|1")}})
			require.ErrorAs(t, err, &ue, "a key listed twice")
			assert.Equal(t, "p3", ue.HeldBy, "as the SQLite store reports it")

			require.NoError(t, s.Commit(ctx, []store.Write{{Record: plan("p1", 2, "9449306753", "LA1", A), Expect: 1}}))
			require.NoError(t, s.Commit(ctx, []store.Write{{Record: plan("p3", 1, "9449306753", "LA1", B)}}), "dropping a key frees it")
		})
	}
}

// The unique index, not the check before the write, keeps overlapping key
// sets apart when the writers race.
func TestConcurrentOverlappingKeySets(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			if b.ferret {
				t.Skip("FerretDB's SQLite handler indexes an array field as one value (no multikey index), so only " +
					"identical key sets collide in its unique index; overlapping ones are refused by the store's " +
					"check before the write, which racing writers can both pass (TestFerretDBLimits shows the index)")
			}
			ctx := context.Background()
			s, _ := open(t, b, Options{})
			const n = 10
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					r := plan(fmt.Sprintf("r%d", i), 1, "9449306753", "LA1", fmt.Sprintf("own|%d", i), "shared|RACE")
					errs[i] = s.Commit(ctx, []store.Write{{Record: r}})
				}(i)
			}
			wg.Wait()
			ok := 0
			for _, err := range errs {
				if err == nil {
					ok++
				} else {
					assert.ErrorIs(t, err, store.ErrUniqueConflict)
				}
			}
			assert.Equal(t, 1, ok, "exactly one create wins")
		})
	}
}

// Two processes (two stores on one database) updating one record: every
// update applies exactly once.
func TestTwoProcessesUpdatingOneRecord(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			if b.ferret {
				t.Skip("FerretDB's SQLite handler runs a conditional update as a read in Go followed by an " +
					"unconditional write, so it is not a compare-and-swap; the store serialises writes to a record " +
					"only within one process there, so several processes on one FerretDB can lose updates")
			}
			ctx := context.Background()
			s1, name := open(t, b, Options{})
			s2, err := Open(ctx, b.uri, name, Options{})
			require.NoError(t, err)
			t.Cleanup(func() { s2.Close() })
			require.NoError(t, s1.Commit(ctx, []store.Write{{Record: plan("p1", 1, "9449306753", "LA1")}}))
			const each = 8
			var wg sync.WaitGroup
			for _, s := range []*Store{s1, s2, s1, s2} {
				wg.Add(1)
				go func(s *Store) {
					defer wg.Done()
					for done := 0; done < each; {
						cur, err := s.Get(ctx, "EpisodeOfCare", "p1")
						if !assert.NoError(t, err) {
							return
						}
						err = s.Commit(ctx, []store.Write{{Record: plan("p1", cur.Version+1, "9449306753", "LA1"), Expect: cur.Version}})
						if err == nil {
							done++
						} else if !assert.ErrorIs(t, err, store.ErrVersionConflict) {
							return
						}
					}
				}(s)
			}
			wg.Wait()
			hist, err := s2.History(ctx, "EpisodeOfCare", "p1")
			require.NoError(t, err)
			assert.Len(t, hist, 1+4*each)
		})
	}
}

// What the store can rely on from FerretDB v1.24 and what it cannot. If an
// upgrade changes these, revisit the workarounds named here.
func TestFerretDBLimits(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t, backend{name: "ferretdb", uri: ferret.URI, ferret: true}, Options{})
	assert.False(t, s.Transactions(), "no multi-document transactions: multi-record commits are refused")
	assert.True(t, s.ferret, "detected, so writes to one record are serialised in process")

	// A unique index on an array field is on the whole array: [k1] does not
	// collide with [k1 k2]. The store checks keys itself before writing.
	c := s.db.Collection("limits")
	_, err := c.Indexes().CreateOne(ctx, indexModel("keys", true))
	require.NoError(t, err)
	_, err = c.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "keys", Value: bson.A{"k1", "k2"}}})
	require.NoError(t, err)
	_, err = c.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}, {Key: "keys", Value: bson.A{"k1"}}})
	assert.NoError(t, err, "FerretDB: the unique index is not multikey")
	_, err = c.InsertOne(ctx, bson.D{{Key: "_id", Value: 3}, {Key: "keys", Value: bson.A{"k1", "k2"}}})
	assert.True(t, isDuplicate(err), "an identical array does collide")
	// Documents without the field never collide (as with MongoDB's sparse).
	for i := 4; i < 6; i++ {
		_, err = c.InsertOne(ctx, bson.D{{Key: "_id", Value: i}})
		assert.NoError(t, err)
	}
	// A unique violation raised by an update is not reported as code 11000.
	_, err = c.UpdateOne(ctx, bson.D{{Key: "_id", Value: 2}}, bson.D{{Key: "$set", Value: bson.D{{Key: "keys", Value: bson.A{"k1", "k2"}}}}})
	require.Error(t, err)
	assert.True(t, isDuplicate(err), "recognised as a duplicate by its SQLite text: %v", err)
}
