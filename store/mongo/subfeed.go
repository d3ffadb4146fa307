package mongo

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	mongodrv "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"cpis/store"
)

// What the notification outbox reads and prunes beyond its own documents:
// the authority's feed without bodies (numbering needs only which accesses
// and in what order), and the removal of acknowledged events past
// retention.

// AuditFeedHeads is AuditFeed without bodies: the same filter up to the
// same horizon, with the bodies and views projected away.
func (s *Store) AuditFeedHeads(ctx context.Context, owner string, since time.Time, cursor string, limit int) ([]store.AuditRecord, string, error) {
	if err := s.broken(); err != nil {
		return nil, "", err
	}
	after := int64(0)
	if cursor != "" {
		n, err := strconv.ParseInt(strings.TrimPrefix(cursor, "s"), 10, 64)
		if err != nil || !strings.HasPrefix(cursor, "s") || n < 0 {
			return nil, "", fmt.Errorf("store/mongo: %w", store.ErrInvalidCursor)
		}
		after = n
	}
	if limit <= 0 {
		return nil, cursor, nil
	}
	var docs []auditDoc
	err := s.run(ctx, func(ctx context.Context) error {
		h, err := s.horizon(ctx)
		if err != nil || h <= after {
			return err
		}
		// With a cursor, begin at it (see the SQLite store): finding the
		// first record since the date would walk every entry since it.
		if !since.IsZero() && after == 0 {
			first, err := s.firstSince(ctx, owner, since, h)
			if err != nil || first == 0 {
				return err
			}
			after = max(after, first-1)
		}
		f := bson.D{{Key: "owners", Value: owner}, {Key: "_id", Value: bson.D{{Key: "$gt", Value: after}, {Key: "$lte", Value: h}}}, {Key: "notify", Value: true}}
		if !since.IsZero() {
			f = append(f, bson.E{Key: "recorded", Value: bson.D{{Key: "$gte", Value: since.UnixNano()}}})
		}
		cur, err := s.audit.Find(ctx, f, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetLimit(int64(limit)).
			SetProjection(bson.D{{Key: "body", Value: 0}, {Key: "views", Value: 0}}))
		if err != nil {
			return s.fail("reading access records", err)
		}
		if err := cur.All(ctx, &docs); err != nil {
			return s.fail("reading access records", err)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	if len(docs) == 0 {
		return nil, cursor, nil
	}
	out := make([]store.AuditRecord, len(docs))
	for i := range docs {
		out[i] = docs[i].record()
	}
	return out, "s" + strconv.FormatInt(docs[len(docs)-1].Seq, 10), nil
}

// FirstSubEvent returns the lowest event number a subscription holds.
func (s *Store) FirstSubEvent(ctx context.Context, id string) (int64, error) {
	var doc struct {
		Number int64 `bson:"number"`
	}
	err := s.run(ctx, func(ctx context.Context) error {
		return s.db.Collection(subEvColl).FindOne(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$gt", Value: id + "#"}, {Key: "$lt", Value: id + "$"}}}},
			options.FindOne().SetSort(bson.D{{Key: "_id", Value: 1}})).Decode(&doc)
	})
	if errors.Is(err, mongodrv.ErrNoDocuments) {
		return 0, nil
	}
	if err != nil {
		return 0, s.fail("reading a subscription's events", err)
	}
	return doc.Number, nil
}

// PruneSubEvents removes acknowledged events recorded before cutoff: per
// subscription, the run from its first held event to the first recorded at
// or after cutoff (found walking the events in number order: only those
// removed and one more are read), never past the acknowledged number read
// under the subscription's lock (the holder's outcome writes take it too).
// A deletion is one range of _id, so several processes pruning at once
// remove each event once.
func (s *Store) PruneSubEvents(ctx context.Context, cutoff time.Time) (int, error) {
	subs, err := s.ListSubscriptions(ctx, "")
	if err != nil {
		return 0, err
	}
	total := 0
	for _, sub := range subs {
		n, err := s.pruneSub(ctx, sub.ID, cutoff)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (s *Store) pruneSub(ctx context.Context, id string, cutoff time.Time) (int, error) {
	defer s.lockRecord(subsColl + "/" + id)()
	sub, err := s.GetSubscription(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil || sub.Acked == 0 {
		return 0, err
	}
	stop := sub.Acked + 1
	var doc struct {
		Number int64 `bson:"number"`
	}
	var n int64
	err = s.run(ctx, func(ctx context.Context) error {
		err := s.db.Collection(subEvColl).FindOne(ctx, bson.D{
			{Key: "_id", Value: bson.D{{Key: "$gt", Value: id + "#"}, {Key: "$lte", Value: evKey(id, sub.Acked)}}},
			{Key: "recorded", Value: bson.D{{Key: "$gte", Value: cutoff.UnixNano()}}}},
			options.FindOne().SetSort(bson.D{{Key: "_id", Value: 1}}).SetProjection(bson.D{{Key: "number", Value: 1}})).Decode(&doc)
		switch {
		case err == nil:
			stop = doc.Number
		case !errors.Is(err, mongodrv.ErrNoDocuments):
			return s.fail("reading a subscription's events", err)
		}
		res, err := s.db.Collection(subEvColl).DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{
			{Key: "$gt", Value: id + "#"}, {Key: "$lt", Value: evKey(id, stop)}}}})
		if err != nil {
			return s.fail("pruning a subscription's events", err)
		}
		n = res.DeletedCount
		return nil
	})
	return int(n), err
}
