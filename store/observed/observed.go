// Package observed wraps a store so that every call is timed, for metrics.
package observed

import (
	"context"
	"time"

	"cpis/store"
)

// Observer is told each store call's operation name, duration and error.
type Observer func(op string, d time.Duration, err error)

// Wrap returns s with every call reported to observe. What optional
// interfaces s implements (store.TypeHistorian, store.Subscriptions,
// store.Exporter: both backends implement all), the wrapped store does too.
func Wrap(s store.Store, observe Observer) store.Store {
	o := &observed{s: s, observe: observe}
	th, okTH := s.(store.TypeHistorian)
	subs, okSubs := s.(store.Subscriptions)
	ex, okEx := s.(store.Exporter)
	if okTH && okSubs && okEx {
		return &full{observed: o, th: th, subs: subs, ex: ex}
	}
	return o
}

// full is an observed store whose backend implements every optional
// interface the server uses (both backends do); its methods for them are in
// this package's other files.
type full struct {
	*observed
	th   store.TypeHistorian
	subs store.Subscriptions
	ex   store.Exporter
}

type observed struct {
	s       store.Store
	observe Observer
}

func (o *observed) done(op string, start time.Time, err error) {
	o.observe(op, time.Since(start), err)
}

func (o *observed) Commit(ctx context.Context, writes []store.Write) (err error) {
	defer func(start time.Time) { o.done("commit", start, err) }(time.Now())
	return o.s.Commit(ctx, writes)
}

func (o *observed) Get(ctx context.Context, typ, id string) (r store.Record, err error) {
	defer func(start time.Time) { o.done("get", start, err) }(time.Now())
	return o.s.Get(ctx, typ, id)
}

func (o *observed) GetVersion(ctx context.Context, typ, id string, version int64) (r store.Record, err error) {
	defer func(start time.Time) { o.done("get_version", start, err) }(time.Now())
	return o.s.GetVersion(ctx, typ, id, version)
}

func (o *observed) History(ctx context.Context, typ, id string) (r []store.Record, err error) {
	defer func(start time.Time) { o.done("history", start, err) }(time.Now())
	return o.s.History(ctx, typ, id)
}

func (o *observed) Search(ctx context.Context, q store.Query) (r []store.Record, n int, err error) {
	defer func(start time.Time) { o.done("search", start, err) }(time.Now())
	return o.s.Search(ctx, q)
}

func (o *observed) Holders(ctx context.Context, typ string, keys []string) (r map[string]store.Record, err error) {
	defer func(start time.Time) { o.done("holders", start, err) }(time.Now())
	return o.s.Holders(ctx, typ, keys)
}

func (o *observed) Audit(ctx context.Context, recs []store.AuditRecord) (err error) {
	defer func(start time.Time) { o.done("audit", start, err) }(time.Now())
	return o.s.Audit(ctx, recs)
}

func (o *observed) AuditBySubject(ctx context.Context, subject string, since time.Time, limit int) (r []store.AuditRecord, err error) {
	defer func(start time.Time) { o.done("audit_by_subject", start, err) }(time.Now())
	return o.s.AuditBySubject(ctx, subject, since, limit)
}

func (o *observed) AuditHeadsBySubject(ctx context.Context, subject string, since time.Time, limit int) (r []store.AuditRecord, err error) {
	defer func(start time.Time) { o.done("audit_heads_by_subject", start, err) }(time.Now())
	return o.s.AuditHeadsBySubject(ctx, subject, since, limit)
}

func (o *observed) AuditBodies(ctx context.Context, seqs []int64) (r []store.AuditRecord, err error) {
	defer func(start time.Time) { o.done("audit_bodies", start, err) }(time.Now())
	return o.s.AuditBodies(ctx, seqs)
}

func (o *observed) AuditFeedTotal(ctx context.Context, owner string, since time.Time) (n int, err error) {
	defer func(start time.Time) { o.done("audit_feed_total", start, err) }(time.Now())
	return o.s.AuditFeedTotal(ctx, owner, since)
}

func (o *observed) AuditFeed(ctx context.Context, owner string, since time.Time, cursor string, limit int) (r []store.AuditRecord, next string, err error) {
	defer func(start time.Time) { o.done("audit_feed", start, err) }(time.Now())
	return o.s.AuditFeed(ctx, owner, since, cursor, limit)
}

func (o *observed) Purge(ctx context.Context, cutoff time.Time) (st store.PurgeStats, err error) {
	defer func(start time.Time) { o.done("purge", start, err) }(time.Now())
	return o.s.Purge(ctx, cutoff)
}

func (o *observed) Ping(ctx context.Context) (err error) {
	defer func(start time.Time) { o.done("ping", start, err) }(time.Now())
	return o.s.Ping(ctx)
}

func (o *observed) Close() error { return o.s.Close() }
