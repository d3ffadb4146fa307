package store

import (
	"context"
	"time"
)

// Subscription is a local authority's notification subscription (the R4
// Subscription resource it wrote) with the state of its outbox: how far the
// authority's feed has been numbered for it, and how far its endpoint has
// acknowledged. The outbox fields are written only by the lease holder.
type Subscription struct {
	ID      string
	Owner   string // the local authority's ODS code
	Version int64  // 1 for the first version; bumped by each update
	Updated time.Time
	// Body is the Subscription JSON as stored, channel.header included:
	// never served as it is.
	Body []byte
	// Start is when the subscription was created: its events are the
	// feed's accesses recorded at or after it.
	Start time.Time
	// Status is requested | active | error | off.
	Status string

	// Cursor is the feed cursor after the last access numbered; Events the
	// last event number given ("" and 0 at first).
	Cursor string
	Events int64
	// Acked is the last event number the endpoint acknowledged (2xx).
	Acked int64
	// Failures counts failed attempts in a row since FailingSince.
	Failures     int
	FailingSince time.Time
	NextAttempt  time.Time
	LastSent     time.Time // the last notification the endpoint took
	Error        string    // why the last attempt failed; no body, no header

	// The lease: Holder delivers until LeaseUntil; Epoch counts claims.
	Holder     string
	Epoch      int64
	LeaseUntil time.Time
}

// SubEvent is one numbered event of a subscription: the access record (by
// its Seq) that is event Number. ID is the access's id (the AuditEvent's),
// kept so an id-only or empty notification needs no read of the access;
// "" for events numbered before it was kept.
type SubEvent struct {
	Number   int64
	Seq      int64
	Recorded time.Time
	ID       string
}

// Delivery is the outbox state a lease holder records after an attempt.
type Delivery struct {
	Status       string
	Acked        int64
	Failures     int
	FailingSince time.Time
	NextAttempt  time.Time
	LastSent     time.Time
	Error        string
}

// Subscriptions is the durable outbox of notifications, an optional part of
// a Store (both backends implement it). Writes that race are refused with
// ErrVersionConflict, never applied half: an update of the resource names
// the version it replaces; an outbox write names the lease (holder and
// epoch) it holds, and the feed cursor or resource version it continues.
type Subscriptions interface {
	// PutSubscription creates s (expect 0; ErrVersionConflict if the id is
	// taken) or replaces its resource fields (ID, Version, Updated, Body,
	// Status) when the stored version is expect. The outbox state is kept.
	PutSubscription(ctx context.Context, s Subscription, expect int64) error
	// DeleteSubscription removes a subscription and its events at once;
	// ErrNotFound if there is none.
	DeleteSubscription(ctx context.Context, id string) error
	GetSubscription(ctx context.Context, id string) (Subscription, error)
	// ListSubscriptions returns owner's subscriptions ("" for everyone's),
	// by id.
	ListSubscriptions(ctx context.Context, owner string) ([]Subscription, error)
	// ClaimSubscription renews holder's lease until now+ttl, or takes the
	// lease over when it has expired (or was never held). It returns the
	// subscription as it stands and whether holder now holds the lease.
	ClaimSubscription(ctx context.Context, id, holder string, now time.Time, ttl time.Duration) (Subscription, bool, error)
	// AppendSubEvents numbers the accesses of one feed page: when the lease
	// is still (holder, epoch) and the cursor still from, it stores evs
	// (numbered on from Events+1) and moves the cursor to to.
	AppendSubEvents(ctx context.Context, id, holder string, epoch int64, from, to string, evs []SubEvent) error
	// SetSubDelivery records an attempt's outcome, when the lease is still
	// (holder, epoch) and the resource still at version.
	SetSubDelivery(ctx context.Context, id, holder string, epoch, version int64, d Delivery) error
	// SubEvents returns up to limit events numbered after after, in order.
	SubEvents(ctx context.Context, id string, after int64, limit int) ([]SubEvent, error)

	// AuditFeedHeads is Store.AuditFeed without the bodies (Body and Views
	// nil; Seq, ID, Recorded, Subject, Owners and Notify set), with the
	// same cursor: what numbering events needs, without reading and
	// decoding each AuditEvent.
	AuditFeedHeads(ctx context.Context, owner string, since time.Time, cursor string, limit int) ([]AuditRecord, string, error)
	// PruneSubEvents removes, from every subscription's outbox, the events
	// its endpoint acknowledged that were recorded before cutoff: for each
	// subscription the longest run from its oldest held event that is both
	// (so what is held is always one run of numbers, up to Events). It
	// returns how many it removed. Safe to run from several processes.
	PruneSubEvents(ctx context.Context, cutoff time.Time) (int, error)
	// FirstSubEvent returns the lowest event number a subscription still
	// holds (0 if it holds none: none numbered yet, or all pruned).
	FirstSubEvent(ctx context.Context, id string) (int64, error)
}
