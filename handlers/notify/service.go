package notify

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"cpis/auth"
	"cpis/fhir"
	"cpis/store"
)

// Feed is the authority's notification feed as it is served it (the
// registry's LAFeedHeads, LABodies and LAPlanTypes): the one source of
// events.
type Feed interface {
	// LAFeedHeads pages the feed without bodies (Seq, ID, Recorded,
	// Subject): what numbering needs.
	LAFeedHeads(ctx context.Context, owner string, since time.Time, cursor string, limit int) ([]store.AuditRecord, string, error)
	LABodies(ctx context.Context, owner string, seqs []int64) ([]store.AuditRecord, error)
	// LAPlanTypes is the plan types of owner's plans about a subject, for
	// a subscription filtered by plan type.
	LAPlanTypes(ctx context.Context, owner, subject string) ([]string, error)
}

// Metrics observes deliveries.
type Metrics interface {
	// Delivered counts one attempt by kind (handshake, heartbeat,
	// event-notification) and outcome (ok, failed).
	Delivered(kind, outcome string)
	// Lag observes, per event delivered, the time from its access being
	// recorded to the endpoint's 2xx.
	Lag(d time.Duration)
	// Queue is the number of events numbered and not yet acknowledged,
	// over the subscriptions this process delivers.
	Queue(n int)
}

// Config is what the service needs, built once by the caller.
type Config struct {
	// Store must implement store.Subscriptions.
	Store store.Store
	Feed  Feed
	// BaseURL is the public FHIR base (references in notifications).
	BaseURL string
	Log     *slog.Logger
	Now     func() time.Time
	NewID   func() string
	Metrics Metrics
	// Client sends notifications; one without redirects is made if nil.
	Client *http.Client
	// AllowHTTP says which hosts plain http:// endpoints may name
	// (Loopback if nil).
	AllowHTTP func(host string) bool
	// InternalHosts are the endpoint hosts (a name, or ".suffix") that may
	// resolve to private or link-local addresses; no other endpoint may
	// (see guard.go). Used by the client made when Client is nil.
	InternalHosts []string

	// Holder names this process in delivery leases (a random id if "").
	Holder string
	// Poll is how often the outbox is looked at without a wake-up (1s).
	Poll time.Duration
	// Gather is how long a wake-up waits for more accesses before a round
	// (250ms): under load one notification carries a busy moment's
	// accesses, so the outbox's writes stay few beside the audit's. It
	// bounds the delivery lag it adds.
	Gather time.Duration
	// AttemptTimeout bounds one POST (10s); a subscription's
	// backport-timeout may shorten it.
	AttemptTimeout time.Duration
	// RetryBase and RetryMax bound the backoff between failed attempts
	// (1s, 5m), with jitter.
	RetryBase, RetryMax time.Duration
	// ErrorAttempts failed attempts in a row over at least ErrorAfter turn
	// a subscription to error (10 over 10m).
	ErrorAttempts int
	ErrorAfter    time.Duration
	// Lease is how long a process holds a subscription's delivery without
	// renewing it (30s); another process takes over after it.
	Lease time.Duration
	// PerEndpoint bounds concurrent POSTs to one endpoint host (4).
	PerEndpoint int
	// MaxPerLA caps the subscriptions one authority holds (10): a create
	// beyond it is refused, so no authority can make the server keep and
	// deliver an unbounded number of outboxes.
	MaxPerLA int
}

// Service manages subscriptions and delivers their notifications.
type Service struct {
	cfg  Config
	st   store.Subscriptions
	wake chan struct{}

	mu      sync.Mutex
	running map[string]context.CancelFunc // subscriptions being delivered here
	leases  map[string]time.Time          // when this process's leases end
	sems    map[string]chan struct{}      // per endpoint host

	// creating serialises creates, so two at once cannot both pass the
	// per-authority cap in this process (another process's create may
	// still race one here: at most one more per process).
	creating sync.Mutex
}

// New checks the configuration and builds the service.
func New(c Config) (*Service, error) {
	st, ok := c.Store.(store.Subscriptions)
	if !ok || c.Feed == nil || c.Log == nil || c.BaseURL == "" {
		return nil, errors.New("notify: a store with subscriptions, a feed, a log and a base URL are required")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.NewID == nil {
		c.NewID = uuid.NewString
	}
	if c.AllowHTTP == nil {
		c.AllowHTTP = Loopback
	}
	if c.Holder == "" {
		c.Holder = uuid.NewString()
	}
	if c.Client == nil {
		c.Client = guardedClient(c.InternalHosts)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Poll, time.Second)
	def(&c.Gather, 250*time.Millisecond)
	def(&c.AttemptTimeout, 10*time.Second)
	def(&c.RetryBase, time.Second)
	def(&c.RetryMax, 5*time.Minute)
	def(&c.ErrorAfter, 10*time.Minute)
	def(&c.Lease, 30*time.Second)
	if c.ErrorAttempts <= 0 {
		c.ErrorAttempts = 10
	}
	if c.PerEndpoint <= 0 {
		c.PerEndpoint = 4
	}
	if c.MaxPerLA <= 0 {
		c.MaxPerLA = 10
	}
	return &Service{cfg: c, st: st, wake: make(chan struct{}, 1), running: map[string]context.CancelFunc{},
		sems: map[string]chan struct{}{}, leases: map[string]time.Time{}}, nil
}

// Nudge wakes the delivery: accesses were recorded. It never blocks.
func (s *Service) Nudge() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Service) now() time.Time { return s.cfg.Now().UTC() }

// may checks the caller is a local authority system holding the scope.
func may(p *auth.Principal, a auth.Access) error {
	if !p.IsLA() || !p.Allows("Subscription", a) {
		return fhir.Errorf(fhir.KindForbidden, "Access has been denied to process this request: subscriptions are for local authority systems with system/Subscription.%s", map[auth.Access]string{auth.Read: "read", auth.Write: "write"}[a])
	}
	return nil
}

// storeErr turns a store error into what a client sees.
func storeErr(err error) error {
	switch {
	case err == nil:
		return nil
	case fhir.As(err) != nil:
		return err
	case errors.Is(err, store.ErrNotFound):
		return fhir.Wrap(fhir.KindNotFound, err, "Resource not found")
	case errors.Is(err, store.ErrVersionConflict):
		return fhir.Wrap(fhir.KindConflict, err, "The subscription was changed at the same time; send the request again")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return fhir.Wrap(fhir.KindUnavailable, err, "The service is unavailable; try again shortly")
}

// Sub is a subscription as its authority is served it.
type Sub struct {
	ID      string
	Version int64
	Updated time.Time
	Body    []byte // without channel.header
}

func view(sub store.Subscription) (Sub, error) {
	body, err := served(sub.Body, sub.Status, sub.Error)
	if err != nil {
		return Sub{}, fhir.Wrap(fhir.KindInternal, err, "A stored subscription could not be read")
	}
	return Sub{ID: sub.ID, Version: sub.Version, Updated: sub.Updated, Body: body}, nil
}

// own reads a subscription of the caller's; another authority's is not
// found, exactly as a missing one.
func (s *Service) own(ctx context.Context, p *auth.Principal, id string) (store.Subscription, error) {
	sub, err := s.st.GetSubscription(ctx, id)
	if err != nil {
		return store.Subscription{}, storeErr(err)
	}
	if sub.Owner != p.OrgCode {
		return store.Subscription{}, fhir.Errorf(fhir.KindNotFound, "Resource not found")
	}
	return sub, nil
}

// stamp makes the stored body of an incoming Subscription.
func stamp(res *fhir.Resource, id, status string, version int64, at time.Time) []byte {
	res.SetID(id)
	res.Fields["status"] = status
	delete(res.Fields, "error")
	res.Stamp(version, at, SubscriptionProfile)
	return res.Encode()
}

// Create stores a new subscription (status requested: the handshake
// follows in the background) and returns it as served.
func (s *Service) Create(ctx context.Context, p *auth.Principal, res *fhir.Resource) (Sub, error) {
	if err := may(p, auth.Write); err != nil {
		return Sub{}, err
	}
	status, err := checkSub(res, s.cfg.AllowHTTP, s.cfg.InternalHosts)
	if err != nil {
		return Sub{}, err
	}
	s.creating.Lock()
	defer s.creating.Unlock()
	held, err := s.st.ListSubscriptions(ctx, p.OrgCode)
	if err != nil {
		return Sub{}, storeErr(err)
	}
	if len(held) >= s.cfg.MaxPerLA {
		return Sub{}, fhir.Errorf(fhir.KindUnprocessable, "This local authority already holds %d subscriptions, the most this server keeps for one; "+
			"delete one it no longer needs (or update it) before creating another", len(held))
	}
	now := s.now()
	id := s.cfg.NewID()
	sub := store.Subscription{ID: id, Owner: p.OrgCode, Version: 1, Updated: now, Start: now, Status: status,
		Body: stamp(res, id, status, 1, now)}
	if err := s.st.PutSubscription(ctx, sub, 0); err != nil {
		return Sub{}, storeErr(err)
	}
	s.Nudge()
	return view(sub)
}

// Read returns one of the caller's subscriptions.
func (s *Service) Read(ctx context.Context, p *auth.Principal, id string) (Sub, error) {
	if err := may(p, auth.Read); err != nil {
		return Sub{}, err
	}
	sub, err := s.own(ctx, p, id)
	if err != nil {
		return Sub{}, err
	}
	return view(sub)
}

// Search returns the caller's subscriptions.
func (s *Service) Search(ctx context.Context, p *auth.Principal) ([]Sub, error) {
	if err := may(p, auth.Read); err != nil {
		return nil, err
	}
	subs, err := s.st.ListSubscriptions(ctx, p.OrgCode)
	if err != nil {
		return nil, storeErr(err)
	}
	out := make([]Sub, 0, len(subs))
	for _, sub := range subs {
		v, err := view(sub)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// Update replaces one of the caller's subscriptions (ifMatch, if set, is
// the version it must be at). Its outbox stays: events keep their numbers.
// A subscription updated to requested is handshaken again and, once
// active, delivery resumes at the first unacknowledged event.
func (s *Service) Update(ctx context.Context, p *auth.Principal, id string, res *fhir.Resource, ifMatch *int64) (Sub, error) {
	if err := may(p, auth.Write); err != nil {
		return Sub{}, err
	}
	if rid := res.ID(); rid != id {
		return Sub{}, fhir.At(fhir.KindInvalid, "Subscription.id", "The resource's id must be the id in the URL")
	}
	status, err := checkSub(res, s.cfg.AllowHTTP, s.cfg.InternalHosts)
	if err != nil {
		return Sub{}, err
	}
	cur, err := s.own(ctx, p, id)
	if err != nil {
		return Sub{}, err
	}
	if ifMatch != nil && *ifMatch != cur.Version {
		return Sub{}, fhir.Errorf(fhir.KindPreconditionFailed, "The subscription is at version %d, not %d", cur.Version, *ifMatch)
	}
	now := s.now()
	cur.Version++
	cur.Updated, cur.Status, cur.Error = now, status, ""
	cur.Body = stamp(res, id, status, cur.Version, now)
	if err := s.st.PutSubscription(ctx, cur, cur.Version-1); err != nil {
		return Sub{}, storeErr(err)
	}
	s.cancel(id)
	s.Nudge()
	return view(cur)
}

// Delete removes one of the caller's subscriptions and stops its delivery
// at once (an attempt in flight in this process is cancelled; another
// process stops at its next step, which finds the subscription gone).
func (s *Service) Delete(ctx context.Context, p *auth.Principal, id string) error {
	if err := may(p, auth.Write); err != nil {
		return err
	}
	if _, err := s.own(ctx, p, id); err != nil {
		return err
	}
	if err := s.st.DeleteSubscription(ctx, id); err != nil {
		return storeErr(err)
	}
	s.forget(id)
	return nil
}

// cancel stops this process's delivery of a subscription in flight.
func (s *Service) cancel(id string) {
	s.mu.Lock()
	if c := s.running[id]; c != nil {
		c()
	}
	s.mu.Unlock()
}

// forget drops what this process knows of a deleted subscription.
func (s *Service) forget(id string) {
	s.cancel(id)
	s.mu.Lock()
	delete(s.leases, id)
	s.mu.Unlock()
}

// Status is $status: the subscription's status Parameters (query-status).
func (s *Service) Status(ctx context.Context, p *auth.Principal, id string) ([]byte, error) {
	if err := may(p, auth.Read); err != nil {
		return nil, err
	}
	sub, err := s.own(ctx, p, id)
	if err != nil {
		return nil, err
	}
	return s.statusParams(sub, "query-status", nil), nil
}

// Events is $events: the numbered events from since to until (inclusive;
// 0 for the first held and the last given; a range reaching events pruned
// after retention is refused with 410), at most maxEventsPerMsg of them, in a
// notification Bundle (query-event) with the content asked ("" for the
// subscription's own).
func (s *Service) Events(ctx context.Context, p *auth.Principal, id string, since, until int64, content string) ([]byte, error) {
	if err := may(p, auth.Read); err != nil {
		return nil, err
	}
	sub, err := s.own(ctx, p, id)
	if err != nil {
		return nil, err
	}
	ch, err := channelOf(sub.Body)
	if err != nil {
		return nil, fhir.Wrap(fhir.KindInternal, err, "A stored subscription could not be read")
	}
	switch content {
	case "":
		content = ch.Content
	case Empty, IDOnly, FullResource:
	default:
		return nil, fhir.At(fhir.KindInvalidSearch, "content", "content must be empty, id-only or full-resource")
	}
	// Acknowledged events are pruned after the retention period (the
	// sweep): what is held is one run of numbers, from first to the last
	// given. A range reaching below it is answered as such, not as an
	// empty Bundle that would look like nothing happened.
	first, err := s.st.FirstSubEvent(ctx, id)
	if err != nil {
		return nil, storeErr(err)
	}
	if first == 0 {
		first = sub.Events + 1 // none held: none given, or all pruned
	}
	if since < 1 {
		since = max(1, first) // not asked: from the first held
	}
	if until <= 0 || until > sub.Events {
		until = sub.Events
	}
	if since < first && since <= until {
		return nil, fhir.Errorf(fhir.KindGone, "Events %d to %d of this subscription are no longer held: events the endpoint acknowledged are "+
			"removed once older than the retention period; the earliest held is %d", since, first-1, first)
	}
	limit := int(min(int64(maxEventsPerMsg), max(0, until-since+1)))
	evs, err := s.st.SubEvents(ctx, id, since-1, limit)
	if err != nil {
		return nil, storeErr(err)
	}
	return s.notification(ctx, sub, "query-event", content, evs)
}

// parseNumber reads an event number parameter ("" is 0).
func ParseNumber(name, v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 0, fhir.At(fhir.KindInvalidSearch, name, "%s must be a positive whole number", name)
	}
	return n, nil
}
