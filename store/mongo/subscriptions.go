package mongo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	mongodrv "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"cpis/store"
)

// Subscriptions: one document per subscription in "subscriptions" (the
// resource and its outbox state), its numbered events in "sub_events" with
// the _id subscription#number (zero-padded, so a range of _id is a range of
// numbers and needs no index of its own), and lease claims in "sub_claims".
//
// On FerretDB, whose conditional update is a read and a write of the whole
// document, every write of a subscription's document is serialised within
// the process (lockRecord), as the resources' are: an outcome recorded by
// the delivery must not undo the authority's update that came between.
//
// Without multi-document transactions (FerretDB, standalone servers) every
// write is one conditional single-document update, ordered so a crash
// between two steps leaves nothing visible: events are written before the
// cursor and the last number that make them part of the outbox (SubEvents
// never returns a number beyond it, and the next holder writes the same
// numbers again over any left behind). Taking over a lease inserts the
// claim subscription#epoch first: the unique _id lets exactly one process
// win an epoch even where conditional updates are not atomic (FerretDB).

const (
	subsColl   = "subscriptions"
	subEvColl  = "sub_events"
	claimsColl = "sub_claims"
)

var _ store.Subscriptions = (*Store)(nil)

type subDoc struct {
	ID           string `bson:"_id"`
	Owner        string `bson:"owner"`
	Version      int64  `bson:"version"`
	Updated      int64  `bson:"updated"`
	Start        int64  `bson:"start"`
	Status       string `bson:"status"`
	Cursor       string `bson:"cursor"`
	Events       int64  `bson:"events"`
	Acked        int64  `bson:"acked"`
	Failures     int    `bson:"failures"`
	FailingSince int64  `bson:"failing_since"`
	NextAttempt  int64  `bson:"next_attempt"`
	LastSent     int64  `bson:"last_sent"`
	Error        string `bson:"error"`
	Holder       string `bson:"holder"`
	Epoch        int64  `bson:"epoch"`
	LeaseUntil   int64  `bson:"lease_until"`
	Body         []byte `bson:"body"`
}

func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNS(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func (d subDoc) sub() store.Subscription {
	return store.Subscription{ID: d.ID, Owner: d.Owner, Version: d.Version, Updated: fromNS(d.Updated), Body: d.Body,
		Start: fromNS(d.Start), Status: d.Status, Cursor: d.Cursor, Events: d.Events, Acked: d.Acked, Failures: d.Failures,
		FailingSince: fromNS(d.FailingSince), NextAttempt: fromNS(d.NextAttempt), LastSent: fromNS(d.LastSent), Error: d.Error,
		Holder: d.Holder, Epoch: d.Epoch, LeaseUntil: fromNS(d.LeaseUntil)}
}

func evKey(id string, n int64) string { return fmt.Sprintf("%s#%020d", id, n) }

// GetSubscription returns one subscription.
func (s *Store) GetSubscription(ctx context.Context, id string) (store.Subscription, error) {
	var d subDoc
	err := s.run(ctx, func(ctx context.Context) error {
		return s.db.Collection(subsColl).FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&d)
	})
	if errors.Is(err, mongodrv.ErrNoDocuments) {
		return store.Subscription{}, fmt.Errorf("store/mongo: Subscription/%s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Subscription{}, s.fail("reading a subscription", err)
	}
	return d.sub(), nil
}

// ListSubscriptions returns owner's subscriptions, or everyone's.
func (s *Store) ListSubscriptions(ctx context.Context, owner string) ([]store.Subscription, error) {
	filter := bson.D{}
	if owner != "" {
		filter = bson.D{{Key: "owner", Value: owner}}
	}
	var docs []subDoc
	err := s.run(ctx, func(ctx context.Context) error {
		cur, err := s.db.Collection(subsColl).Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
		if err != nil {
			return err
		}
		return cur.All(ctx, &docs)
	})
	if err != nil {
		return nil, s.fail("listing subscriptions", err)
	}
	out := make([]store.Subscription, len(docs))
	for i, d := range docs {
		out[i] = d.sub()
	}
	return out, nil
}

// PutSubscription creates or updates the resource fields of a subscription.
func (s *Store) PutSubscription(ctx context.Context, sub store.Subscription, expect int64) error {
	defer s.lockRecord(subsColl + "/" + sub.ID)()
	return s.run(ctx, func(ctx context.Context) error {
		if expect == 0 {
			d := subDoc{ID: sub.ID, Owner: sub.Owner, Version: sub.Version, Updated: ns(sub.Updated), Start: ns(sub.Start),
				Status: sub.Status, Body: sub.Body}
			_, err := s.db.Collection(subsColl).InsertOne(ctx, d)
			if isDuplicate(err) {
				return fmt.Errorf("store/mongo: Subscription/%s exists: %w", sub.ID, store.ErrVersionConflict)
			}
			if err != nil {
				return s.fail("creating a subscription", err)
			}
			return nil
		}
		res, err := s.db.Collection(subsColl).UpdateOne(ctx, bson.D{{Key: "_id", Value: sub.ID}, {Key: "version", Value: expect}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "version", Value: sub.Version}, {Key: "updated", Value: ns(sub.Updated)},
				{Key: "status", Value: sub.Status}, {Key: "body", Value: sub.Body}}}})
		return s.matched(ctx, sub.ID, res, err)
	})
}

// matched turns an update that matched nothing into ErrNotFound or
// ErrVersionConflict.
func (s *Store) matched(ctx context.Context, id string, res *mongodrv.UpdateResult, err error) error {
	if err != nil {
		return s.fail("updating a subscription", err)
	}
	if res.MatchedCount == 1 {
		return nil
	}
	n, err := s.db.Collection(subsColl).CountDocuments(ctx, bson.D{{Key: "_id", Value: id}})
	if err != nil {
		return s.fail("reading a subscription", err)
	}
	if n == 0 {
		return fmt.Errorf("store/mongo: Subscription/%s: %w", id, store.ErrNotFound)
	}
	return fmt.Errorf("store/mongo: Subscription/%s changed: %w", id, store.ErrVersionConflict)
}

// DeleteSubscription removes a subscription, then its events and claims
// (left-overs of a crash in between belong to no subscription and are
// never read: ids are not reused).
func (s *Store) DeleteSubscription(ctx context.Context, id string) error {
	defer s.lockRecord(subsColl + "/" + id)()
	return s.run(ctx, func(ctx context.Context) error {
		res, err := s.db.Collection(subsColl).DeleteOne(ctx, bson.D{{Key: "_id", Value: id}})
		if err != nil {
			return s.fail("deleting a subscription", err)
		}
		if res.DeletedCount == 0 {
			return fmt.Errorf("store/mongo: Subscription/%s: %w", id, store.ErrNotFound)
		}
		if _, err := s.db.Collection(subEvColl).DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{
			{Key: "$gt", Value: id + "#"}, {Key: "$lt", Value: id + "$"}}}}); err != nil {
			return s.fail("deleting a subscription's events", err)
		}
		if _, err := s.db.Collection(claimsColl).DeleteMany(ctx, bson.D{{Key: "sub", Value: id}}); err != nil {
			return s.fail("deleting a subscription's claims", err)
		}
		return nil
	})
}

// ClaimSubscription renews or takes over the delivery lease.
func (s *Store) ClaimSubscription(ctx context.Context, id, holder string, now time.Time, ttl time.Duration) (store.Subscription, bool, error) {
	defer s.lockRecord(subsColl + "/" + id)()
	sub, err := s.GetSubscription(ctx, id)
	if err != nil {
		return store.Subscription{}, false, err
	}
	until := now.Add(ttl)
	coll := s.db.Collection(subsColl)
	if sub.Holder == holder && !sub.LeaseUntil.Before(now) {
		var res *mongodrv.UpdateResult
		err := s.run(ctx, func(ctx context.Context) error {
			var err error
			res, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "holder", Value: holder}, {Key: "epoch", Value: sub.Epoch}},
				bson.D{{Key: "$set", Value: bson.D{{Key: "lease_until", Value: ns(until)}}}})
			return err
		})
		if err != nil {
			return store.Subscription{}, false, s.fail("renewing a lease", err)
		}
		sub.LeaseUntil = until
		return sub, res.MatchedCount == 1, nil
	}
	if sub.Holder != "" && !sub.LeaseUntil.Before(now) {
		return sub, false, nil
	}
	epoch := sub.Epoch + 1
	err = s.run(ctx, func(ctx context.Context) error {
		_, err := s.db.Collection(claimsColl).InsertOne(ctx, bson.D{{Key: "_id", Value: evKey(id, epoch)}, {Key: "sub", Value: id},
			{Key: "holder", Value: holder}, {Key: "at", Value: ns(now)}})
		return err
	})
	if isDuplicate(err) {
		return sub, false, nil // another process won this epoch
	}
	if err != nil {
		return store.Subscription{}, false, s.fail("claiming a lease", err)
	}
	var res *mongodrv.UpdateResult
	err = s.run(ctx, func(ctx context.Context) error {
		var err error
		res, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "epoch", Value: sub.Epoch}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "holder", Value: holder}, {Key: "epoch", Value: epoch}, {Key: "lease_until", Value: ns(until)}}}})
		return err
	})
	if err != nil {
		return store.Subscription{}, false, s.fail("taking a lease", err)
	}
	if res.MatchedCount == 0 {
		return sub, false, nil
	}
	sub.Holder, sub.Epoch, sub.LeaseUntil = holder, epoch, until
	return sub, true, nil
}

// AppendSubEvents numbers one feed page's accesses: the events first, then
// the cursor and last number that make them count.
func (s *Store) AppendSubEvents(ctx context.Context, id, holder string, epoch int64, from, to string, evs []store.SubEvent) error {
	defer s.lockRecord(subsColl + "/" + id)()
	return s.run(ctx, func(ctx context.Context) error {
		if len(evs) > 0 {
			// Plain inserts (an upsert is a collection scan on FerretDB).
			// Numbers already there were left by a holder that stopped
			// before moving the cursor (or lost its lease): the same
			// numbers of the same feed from the same cursor, so they are
			// replaced, only in this page's range.
			docs := make([]any, len(evs))
			for i, e := range evs {
				docs[i] = bson.D{{Key: "_id", Value: evKey(id, e.Number)}, {Key: "number", Value: e.Number},
					{Key: "seq", Value: e.Seq}, {Key: "recorded", Value: ns(e.Recorded)}, {Key: "aid", Value: e.ID}}
			}
			coll := s.db.Collection(subEvColl)
			_, err := coll.InsertMany(ctx, docs)
			if isDuplicate(err) {
				if _, err = coll.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{
					{Key: "$gte", Value: evKey(id, evs[0].Number)}, {Key: "$lte", Value: evKey(id, evs[len(evs)-1].Number)}}}}); err == nil {
					_, err = coll.InsertMany(ctx, docs)
				}
			}
			if err != nil {
				return s.fail("writing a subscription's events", err)
			}
		}
		set := bson.D{{Key: "cursor", Value: to}}
		if len(evs) > 0 {
			set = append(set, bson.E{Key: "events", Value: evs[len(evs)-1].Number})
		}
		res, err := s.db.Collection(subsColl).UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "holder", Value: holder},
			{Key: "epoch", Value: epoch}, {Key: "cursor", Value: from}}, bson.D{{Key: "$set", Value: set}})
		return s.matched(ctx, id, res, err)
	})
}

// SetSubDelivery records a delivery attempt's outcome.
func (s *Store) SetSubDelivery(ctx context.Context, id, holder string, epoch, version int64, d store.Delivery) error {
	defer s.lockRecord(subsColl + "/" + id)()
	return s.run(ctx, func(ctx context.Context) error {
		res, err := s.db.Collection(subsColl).UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "holder", Value: holder},
			{Key: "epoch", Value: epoch}, {Key: "version", Value: version}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: d.Status}, {Key: "acked", Value: d.Acked},
				{Key: "failures", Value: d.Failures}, {Key: "failing_since", Value: ns(d.FailingSince)},
				{Key: "next_attempt", Value: ns(d.NextAttempt)}, {Key: "last_sent", Value: ns(d.LastSent)}, {Key: "error", Value: d.Error}}}})
		return s.matched(ctx, id, res, err)
	})
}

// SubEvents returns numbered events after a number, up to the last number
// the subscription counts.
func (s *Store) SubEvents(ctx context.Context, id string, after int64, limit int) ([]store.SubEvent, error) {
	sub, err := s.GetSubscription(ctx, id)
	if err != nil {
		return nil, err
	}
	if sub.Events <= after || limit <= 0 {
		return nil, nil
	}
	var docs []struct {
		Number   int64  `bson:"number"`
		Seq      int64  `bson:"seq"`
		Recorded int64  `bson:"recorded"`
		ID       string `bson:"aid"`
	}
	err = s.run(ctx, func(ctx context.Context) error {
		cur, err := s.db.Collection(subEvColl).Find(ctx, bson.D{{Key: "_id", Value: bson.D{
			{Key: "$gt", Value: evKey(id, after)}, {Key: "$lte", Value: evKey(id, sub.Events)}}}},
			options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetLimit(int64(limit)))
		if err != nil {
			return err
		}
		return cur.All(ctx, &docs)
	})
	if err != nil {
		return nil, s.fail("reading a subscription's events", err)
	}
	out := make([]store.SubEvent, len(docs))
	for i, d := range docs {
		out[i] = store.SubEvent{Number: d.Number, Seq: d.Seq, Recorded: fromNS(d.Recorded), ID: d.ID}
	}
	return out, nil
}
