package mongo

import (
	"context"
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"cpis/store"
)

// updatedRange is the condition on the current version's updated of a
// _lastUpdated search (nil if none).
func updatedRange(q store.Query) bson.D {
	var c bson.D
	if !q.UpdatedFrom.IsZero() {
		c = append(c, bson.E{Key: "$gte", Value: q.UpdatedFrom.UnixNano()})
	}
	if !q.UpdatedTo.IsZero() {
		c = append(c, bson.E{Key: "$lt", Value: q.UpdatedTo.UnixNano()})
	}
	return c
}

// sortUpdated is the order of a sort by updated: updated, then id, the same
// way.
func sortUpdated(s store.Sort) bson.D {
	dir := 1
	if s == store.SortUpdatedDesc {
		dir = -1
	}
	return bson.D{{Key: "updated", Value: dir}, {Key: "id", Value: dir}}
}

// afterUpdated is the keyset condition of a page sorted by updated: the
// records after (AfterUpdated, After) in the sort's direction.
func afterUpdated(q store.Query) bson.E {
	op := "$gt"
	if q.Sort == store.SortUpdatedDesc {
		op = "$lt"
	}
	u := q.AfterUpdated.UnixNano()
	return bson.E{Key: "$or", Value: bson.A{
		bson.D{{Key: "updated", Value: bson.D{{Key: op, Value: u}}}},
		bson.D{{Key: "updated", Value: u}, {Key: "id", Value: bson.D{{Key: op, Value: q.After}}}},
	}}
}

// TypeHistory returns versions of a type's records, newest first. Versions
// live in each document's history array: the documents holding a version of
// the owner's in range are found by the history_owner_type_updated index,
// their history unwound, and the versions filtered, ordered and cut.
func (s *Store) TypeHistory(ctx context.Context, q store.HistoryQuery) ([]store.Record, error) {
	if q.Type == "" || q.Owner == "" || q.Limit <= 0 {
		return nil, fmt.Errorf("store/mongo: a type history needs a type, an owner and a limit")
	}
	if err := s.broken(); err != nil {
		return nil, err
	}
	rng := bson.D{}
	if !q.Since.IsZero() {
		rng = append(rng, bson.E{Key: "$gte", Value: q.Since.UnixNano()})
	}
	if !q.Before.IsZero() {
		rng = append(rng, bson.E{Key: "$lt", Value: q.Before.UnixNano()})
	}
	if !q.After.Updated.IsZero() {
		rng = append(rng, bson.E{Key: "$lte", Value: q.After.Updated.UnixNano()})
	}
	elem := bson.D{{Key: "owner", Value: q.Owner}}
	if len(rng) > 0 {
		elem = append(elem, bson.E{Key: "updated", Value: rng})
	}
	match := bson.D{{Key: "type", Value: q.Type}, {Key: "history", Value: bson.D{{Key: "$elemMatch", Value: elem}}}}
	if s.ferret {
		// FerretDB v1.24 does not match $elemMatch on an array of documents
		// in an aggregation; the second $match below applies it exactly.
		match = bson.D{{Key: "type", Value: q.Type}, {Key: "history.owner", Value: q.Owner}}
	}
	perVersion := bson.D{{Key: "history.owner", Value: q.Owner}}
	if len(rng) > 0 {
		perVersion = append(perVersion, bson.E{Key: "history.updated", Value: rng})
	}
	if !q.After.Updated.IsZero() {
		u := q.After.Updated.UnixNano()
		perVersion = append(perVersion, bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: "history.updated", Value: bson.D{{Key: "$lt", Value: u}}}},
			bson.D{{Key: "history.updated", Value: u}, {Key: "_id", Value: bson.D{{Key: "$lt", Value: docKey(q.Type, q.After.ID)}}}},
			bson.D{{Key: "history.updated", Value: u}, {Key: "_id", Value: docKey(q.Type, q.After.ID)}, {Key: "history.version", Value: bson.D{{Key: "$lt", Value: q.After.Version}}}},
		}})
	}
	// After the unwind only _id ("type/id") and the version are kept (and
	// FerretDB v1.24 keeps nothing else there): the order and the keyset
	// use _id, which orders as the id within one type.
	pipeline := bson.A{
		bson.D{{Key: "$match", Value: match}},
		bson.D{{Key: "$project", Value: bson.D{{Key: "history", Value: 1}}}},
	}
	pipeline = append(pipeline,
		bson.D{{Key: "$unwind", Value: "$history"}},
		bson.D{{Key: "$match", Value: perVersion}},
		bson.D{{Key: "$sort", Value: bson.D{{Key: "history.updated", Value: -1}, {Key: "_id", Value: -1}, {Key: "history.version", Value: -1}}}},
		bson.D{{Key: "$limit", Value: int64(q.Limit)}},
	)
	var out []store.Record
	err := s.run(ctx, func(ctx context.Context) error {
		out = out[:0]
		cur, err := s.res.Aggregate(ctx, pipeline)
		if err != nil {
			return s.fail("reading the history of "+q.Type, err)
		}
		var rows []struct {
			Key     string  `bson:"_id"`
			History version `bson:"history"`
		}
		if err := cur.All(ctx, &rows); err != nil {
			return s.fail("reading the history of "+q.Type, err)
		}
		for i := range rows {
			typ, id, _ := strings.Cut(rows[i].Key, "/")
			d := resource{Type: typ, ID: id}
			out = append(out, d.record(&rows[i].History, q.Type))
		}
		return nil
	})
	return out, err
}

var _ store.TypeHistorian = (*Store)(nil)
