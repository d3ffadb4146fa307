package mongo

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"cpis/store"
)

// startTypes are the types whose bodies carry a period (plans; a plan's
// Flag shares its document).
var startTypes = []string{"EpisodeOfCare"}

// backfillStart gives every live plan written before the period start was
// kept (by an older release) its start, computed from its body as the
// server computes it (store.PeriodStart), so _sort=date orders it with the
// others instead of among the records with none. It runs at every Open:
// the types_start index finds the plans with no start (after the first
// run, none or a few), so it costs little, and it also catches plans an
// older release wrote during a rolling upgrade. Each update is conditional
// on the version read, so a concurrent write is never overwritten.
func (s *Store) backfillStart(ctx context.Context) error {
	cur, err := s.res.Find(ctx,
		bson.D{{Key: "types", Value: bson.D{{Key: "$in", Value: startTypes}}}, {Key: "start", Value: nil}, {Key: "deleted", Value: false}},
		options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}, {Key: "version", Value: 1}, {Key: "body", Value: 1}}))
	if err != nil {
		return s.fail("finding plans with no start", err)
	}
	defer cur.Close(ctx)
	for cur.Next(ctx) {
		var d struct {
			Key     string `bson:"_id"`
			Version int64  `bson:"version"`
			Body    []byte `bson:"body"`
		}
		if err := cur.Decode(&d); err != nil {
			return s.fail("reading a plan with no start", err)
		}
		start := millis(store.PeriodStart(d.Body))
		if start == nil {
			continue // no period.start: it sorts with the records with none
		}
		unlock := s.lockRecord(d.Key)
		_, err := s.res.UpdateOne(ctx, bson.D{{Key: "_id", Value: d.Key}, {Key: "version", Value: d.Version}, {Key: "start", Value: nil}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "start", Value: *start}}}})
		unlock()
		if err != nil {
			return s.fail("setting the start of "+d.Key, err)
		}
	}
	if err := cur.Err(); err != nil {
		return s.fail("finding plans with no start", err)
	}
	return nil
}
