package mongo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	mongodrv "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"cpis/store"
)

var (
	_ store.Dumper = (*Store)(nil)
	_ store.Loader = (*Store)(nil)
)

// Dump streams the whole store: the resource documents in _id order (each
// holds every version of its record), then the access records in sequence
// order without the fence markers, then the sequence counter. MongoDB gives
// no snapshot across collections without a transaction: dump a store no
// server is writing to.
func (s *Store) Dump(ctx context.Context, fn func(store.Item) error) error {
	if err := s.broken(); err != nil {
		return err
	}
	cur, err := s.res.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return s.fail("dumping records", err)
	}
	defer cur.Close(ctx)
	for cur.Next(ctx) {
		var d resource
		if err := cur.Decode(&d); err != nil {
			return s.fail("dumping records", err)
		}
		versions := make([]store.Record, 0, len(d.History))
		for i := range d.History {
			versions = append(versions, d.record(&d.History[i], ""))
		}
		if len(versions) == 0 || versions[len(versions)-1].Version != d.Current.Version {
			return fmt.Errorf("store/mongo: dump: %s has no history entry for its current version: %w", d.Key, store.ErrUnavailable)
		}
		last := &versions[len(versions)-1]
		// The current version's start is the document's (backfillStart sets
		// it there only, on plans written before it was kept).
		last.Start = fromMillis(d.Current.Start)
		for _, k := range d.Keys {
			last.Keys = append(last.Keys, strings.TrimPrefix(k, d.Type+"|"))
		}
		slices.Sort(last.Keys)
		if err := fn(store.Item{Versions: versions}); err != nil {
			return err
		}
	}
	if err := cur.Err(); err != nil {
		return s.fail("dumping records", err)
	}
	acur, err := s.audit.Find(ctx, bson.D{{Key: "fence", Value: bson.D{{Key: "$ne", Value: true}}}}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return s.fail("dumping access records", err)
	}
	defer acur.Close(ctx)
	high := int64(0)
	for acur.Next(ctx) {
		var d auditDoc
		if err := acur.Decode(&d); err != nil {
			return s.fail("dumping access records", err)
		}
		a := d.record()
		high = max(high, d.Seq)
		if err := fn(store.Item{Audit: &a, Seq: d.Seq}); err != nil {
			return err
		}
	}
	if err := acur.Err(); err != nil {
		return s.fail("dumping access records", err)
	}
	var c struct {
		Seq int64 `bson:"seq"`
	}
	err = s.meta.FindOne(ctx, bson.D{{Key: "_id", Value: seqCounter}}).Decode(&c)
	if err != nil && !errors.Is(err, mongodrv.ErrNoDocuments) {
		return s.fail("dumping the sequence counter", err)
	}
	return fn(store.Item{Seq: max(high, c.Seq)})
}

// Empty reports whether the store holds no record and no access record.
func (s *Store) Empty(ctx context.Context) (bool, error) {
	if err := s.broken(); err != nil {
		return false, err
	}
	for _, c := range []*mongodrv.Collection{s.res, s.audit} {
		err := c.FindOne(ctx, bson.D{}, options.FindOne().SetProjection(bson.D{{Key: "_id", Value: 1}})).Err()
		if err == nil {
			return false, nil
		}
		if !errors.Is(err, mongodrv.ErrNoDocuments) {
			return false, s.fail("checking the store is empty", err)
		}
	}
	return true, nil
}

// loadBatch is how many documents one insertMany of a load holds.
const loadBatch = 256

// Load inserts the items: one document per record with its whole history,
// access records under their own sequence numbers. The sequence counter and
// the saved feed horizon are raised to the dump's mark, so the feed serves
// the loaded records at once and new ones are numbered after them.
func (s *Store) Load(ctx context.Context, next func() (store.Item, error)) error {
	if err := s.broken(); err != nil {
		return err
	}
	var res, aud []any
	flush := func() error {
		if len(res) > 0 {
			if _, err := s.res.InsertMany(ctx, res); err != nil {
				return s.fail("loading records", err)
			}
			res = res[:0]
		}
		if len(aud) > 0 {
			if _, err := s.audit.InsertMany(ctx, aud); err != nil {
				return s.fail("loading access records", err)
			}
			aud = aud[:0]
		}
		return nil
	}
	for {
		it, err := next()
		if errors.Is(err, io.EOF) {
			return flush()
		}
		if err != nil {
			return err
		}
		switch {
		case len(it.Versions) > 0:
			last := it.Versions[len(it.Versions)-1]
			d := newResource(last)
			d.History = d.History[:0]
			for _, v := range it.Versions {
				if v.Type != last.Type || v.ID != last.ID {
					return fmt.Errorf("store/mongo: load: a record's versions name %s/%s and %s/%s", v.Type, v.ID, last.Type, last.ID)
				}
				d.History = append(d.History, newResource(v).Current)
			}
			res = append(res, d)
		case it.Audit != nil:
			doc := newAuditDoc(*it.Audit)
			doc.Seq = it.Seq
			aud = append(aud, &doc)
		default:
			if err := flush(); err != nil {
				return err
			}
			for _, mark := range []string{seqCounter, feedMark} {
				_, err := s.meta.UpdateOne(ctx, bson.D{{Key: "_id", Value: mark}},
					bson.D{{Key: "$max", Value: bson.D{{Key: "seq", Value: it.Seq}}}}, options.UpdateOne().SetUpsert(true))
				if err != nil {
					return s.fail("loading the sequence counter", err)
				}
			}
		}
		if len(res) >= loadBatch || len(aud) >= loadBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
}
