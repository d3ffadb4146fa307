package observed

import (
	"context"
	"time"

	"cpis/store"
)

func (o *full) PutSubscription(ctx context.Context, s store.Subscription, expect int64) (err error) {
	defer func(start time.Time) { o.done("sub_put", start, err) }(time.Now())
	return o.subs.PutSubscription(ctx, s, expect)
}

func (o *full) DeleteSubscription(ctx context.Context, id string) (err error) {
	defer func(start time.Time) { o.done("sub_delete", start, err) }(time.Now())
	return o.subs.DeleteSubscription(ctx, id)
}

func (o *full) GetSubscription(ctx context.Context, id string) (s store.Subscription, err error) {
	defer func(start time.Time) { o.done("sub_get", start, err) }(time.Now())
	return o.subs.GetSubscription(ctx, id)
}

func (o *full) ListSubscriptions(ctx context.Context, owner string) (s []store.Subscription, err error) {
	defer func(start time.Time) { o.done("sub_list", start, err) }(time.Now())
	return o.subs.ListSubscriptions(ctx, owner)
}

func (o *full) ClaimSubscription(ctx context.Context, id, holder string, now time.Time, ttl time.Duration) (s store.Subscription, held bool, err error) {
	defer func(start time.Time) { o.done("sub_claim", start, err) }(time.Now())
	return o.subs.ClaimSubscription(ctx, id, holder, now, ttl)
}

func (o *full) AppendSubEvents(ctx context.Context, id, holder string, epoch int64, from, to string, evs []store.SubEvent) (err error) {
	defer func(start time.Time) { o.done("sub_append", start, err) }(time.Now())
	return o.subs.AppendSubEvents(ctx, id, holder, epoch, from, to, evs)
}

func (o *full) SetSubDelivery(ctx context.Context, id, holder string, epoch, version int64, d store.Delivery) (err error) {
	defer func(start time.Time) { o.done("sub_delivery", start, err) }(time.Now())
	return o.subs.SetSubDelivery(ctx, id, holder, epoch, version, d)
}

func (o *full) SubEvents(ctx context.Context, id string, after int64, limit int) (e []store.SubEvent, err error) {
	defer func(start time.Time) { o.done("sub_events", start, err) }(time.Now())
	return o.subs.SubEvents(ctx, id, after, limit)
}

func (o *full) AuditFeedHeads(ctx context.Context, owner string, since time.Time, cursor string, limit int) (r []store.AuditRecord, next string, err error) {
	defer func(start time.Time) { o.done("audit_feed_heads", start, err) }(time.Now())
	return o.subs.AuditFeedHeads(ctx, owner, since, cursor, limit)
}

func (o *full) PruneSubEvents(ctx context.Context, cutoff time.Time) (n int, err error) {
	defer func(start time.Time) { o.done("sub_prune", start, err) }(time.Now())
	return o.subs.PruneSubEvents(ctx, cutoff)
}

func (o *full) FirstSubEvent(ctx context.Context, id string) (n int64, err error) {
	defer func(start time.Time) { o.done("sub_first_event", start, err) }(time.Now())
	return o.subs.FirstSubEvent(ctx, id)
}
