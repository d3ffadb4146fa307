package mongo

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"cpis/store"
)

// Deleted implements store.DeletedLister: tombstones found through the
// owner_deleted_id index, each with the body of the version it deleted
// from the document's history.
func (s *Store) Deleted(ctx context.Context, typ, owner string, since time.Time, after string, limit int) ([]store.Record, error) {
	if err := s.broken(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	f := bson.D{{Key: "owner", Value: owner}, {Key: "deleted", Value: true}, {Key: "id", Value: bson.D{{Key: "$gt", Value: after}}},
		{Key: "type", Value: typ}, {Key: "updated", Value: bson.D{{Key: "$gte", Value: since.UnixNano()}}}}
	var out []store.Record
	err := s.run(ctx, func(ctx context.Context) error {
		out = out[:0]
		cur, err := s.res.Find(ctx, f, options.Find().SetSort(bson.D{{Key: "id", Value: 1}}).SetLimit(int64(limit)))
		if err != nil {
			return s.fail("listing deleted "+typ, err)
		}
		var docs []resource
		if err := cur.All(ctx, &docs); err != nil {
			return s.fail("listing deleted "+typ, err)
		}
		for i := range docs {
			d := &docs[i]
			rec := d.record(&d.Current, typ)
			rec.Derived, rec.Body = nil, nil
			for j := range d.History {
				if h := &d.History[j]; h.Version == d.Current.Version-1 && !h.Deleted {
					rec.Body = h.Body
				}
			}
			out = append(out, rec)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
