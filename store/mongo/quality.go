package mongo

import (
	"context"
	"math"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"cpis/store"
)

// scanProjection is what ScanOwner reads of a document: the current
// version's columns and body, not its history, keys or derived Flag.
var scanProjection = bson.D{{Key: "_id", Value: 0}, {Key: "id", Value: 1}, {Key: "version", Value: 1}, {Key: "updated", Value: 1},
	{Key: "subject", Value: 1}, {Key: "end", Value: 1}, {Key: "body", Value: 1}}

// scanned is a document as scanProjection reads it.
type scanned struct {
	ID      string `bson:"id"`
	Version int64  `bson:"version"`
	Updated int64  `bson:"updated"`
	Subject string `bson:"subject"`
	End     int64  `bson:"end"`
	Body    []byte `bson:"body"`
}

// ScanOwner implements store.OwnerScanner: one cursor over the
// owner_types_id index (owner, types, id), in id order, each document
// decoded in turn, so the authority's records are never all held at once.
func (s *Store) ScanOwner(ctx context.Context, typ, owner string, since time.Time, fn func(*store.Record) error) error {
	if err := s.broken(); err != nil {
		return err
	}
	from := int64(math.MinInt64)
	if !since.IsZero() {
		from = since.UnixNano()
	}
	f := bson.D{{Key: "owner", Value: owner}, {Key: "types", Value: typ}, {Key: "type", Value: typ}, {Key: "deleted", Value: false},
		{Key: "end", Value: bson.D{{Key: "$gte", Value: from}}}}
	return s.run(ctx, func(ctx context.Context) error {
		cur, err := s.res.Find(ctx, f, options.Find().SetSort(bson.D{{Key: "id", Value: 1}}).SetProjection(scanProjection))
		if err != nil {
			return s.fail("scanning "+typ, err)
		}
		defer func() { _ = cur.Close(context.WithoutCancel(ctx)) }()
		rec := store.Record{Type: typ, Owner: owner}
		for cur.Next(ctx) {
			var d scanned
			if err := cur.Decode(&d); err != nil {
				return s.fail("scanning "+typ, err)
			}
			rec.ID, rec.Version, rec.Subject, rec.Body = d.ID, d.Version, d.Subject, d.Body
			rec.Updated = time.Unix(0, d.Updated).UTC()
			rec.End = time.Time{}
			if d.End != openEnd {
				rec.End = time.Unix(0, d.End).UTC()
			}
			if err := fn(&rec); err != nil {
				return err
			}
		}
		if err := cur.Err(); err != nil {
			return s.fail("scanning "+typ, err)
		}
		return nil
	})
}
