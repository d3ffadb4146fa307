package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/handlers"
	"cpis/handlers/notify"
	"cpis/handlers/registry"
	"cpis/store"
	"cpis/store/mongo"
	"cpis/store/mongo/mongotest"
)

// Notifications to local authorities: real engine, real stores on both
// backends, a real HTTP receiver (httptest) and the real delivery running
// in the background as cpis serve runs it.

const subScopes = "system/Subscription.*"

// notice is one notification a receiver took.
type notice struct {
	Type    string
	Status  string
	Total   string
	Numbers []int64
	Focus   []string
	Header  http.Header
	Body    []byte
}

// receiver is a local authority's endpoint.
type receiver struct {
	t    testing.TB
	srv  *httptest.Server
	down atomic.Bool   // answers 503
	hold chan struct{} // when set, requests wait on it
	hits atomic.Int64  // requests, including refused ones
	mu   sync.Mutex
	got  []notice
}

func newReceiver(t testing.TB) *receiver {
	rc := &receiver{t: t}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.hits.Add(1)
		rc.mu.Lock()
		hold := rc.hold
		rc.mu.Unlock()
		if hold != nil {
			select {
			case <-hold:
			case <-r.Context().Done():
				return
			}
		}
		body, _ := io.ReadAll(r.Body)
		if rc.down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		n := parseNotice(t, body)
		n.Header = r.Header.Clone()
		rc.mu.Lock()
		rc.got = append(rc.got, n)
		rc.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func parseNotice(t testing.TB, body []byte) notice {
	var b struct {
		ResourceType, Type string
		Entry              []struct {
			Resource struct {
				ResourceType string
				Parameter    []struct {
					Name           string
					ValueCode      string
					ValueString    string
					ValueReference struct{ Reference string }
					Part           []struct {
						Name           string
						ValueString    string
						ValueReference struct{ Reference string }
					}
				}
			}
		}
	}
	require.NoError(t, json.Unmarshal(body, &b))
	require.Equal(t, "Bundle", b.ResourceType)
	require.Equal(t, "history", b.Type)
	require.NotEmpty(t, b.Entry)
	require.Equal(t, "Parameters", b.Entry[0].Resource.ResourceType)
	n := notice{Body: body}
	for _, p := range b.Entry[0].Resource.Parameter {
		switch p.Name {
		case "type":
			n.Type = p.ValueCode
		case "status":
			n.Status = p.ValueCode
		case "events-since-subscription-start":
			n.Total = p.ValueString
		case "notification-event":
			for _, part := range p.Part {
				switch part.Name {
				case "event-number":
					num, err := strconv.ParseInt(part.ValueString, 10, 64)
					require.NoError(t, err)
					n.Numbers = append(n.Numbers, num)
				case "focus":
					n.Focus = append(n.Focus, part.ValueReference.Reference)
				}
			}
		}
	}
	return n
}

func (rc *receiver) url() string { return rc.srv.URL + "/notify" }

func (rc *receiver) notices(typ string) []notice {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []notice
	for _, n := range rc.got {
		if n.Type == typ {
			out = append(out, n)
		}
	}
	return out
}

// numbers are the event numbers received, in the order received.
func (rc *receiver) numbers() []int64 {
	var out []int64
	for _, n := range rc.notices("event-notification") {
		out = append(out, n.Numbers...)
	}
	return out
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			require.FailNow(t, "timed out waiting: "+what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// notifier is one server process's delivery over a store.
type notifier struct {
	svc  *notify.Service
	stop func()
}

// testNow is a clock that runs in real time from the harness's date, so
// delivery's backoff and leases pass while accesses keep a fixed date.
func testNow() func() time.Time {
	start := time.Now()
	t0 := time.Date(2026, 6, 15, 10, 0, 0, 0, time.UTC)
	return func() time.Time { return t0.Add(time.Since(start)) }
}

// withNotify builds the delivery of one server process over the env's
// store; run starts it (as cpis serve does).
func withNotify(t testing.TB, n *notifier, holder string, run bool, now func() time.Time, tune ...func(*notify.Config)) envOption {
	return func(d *handlers.Deps) {
		london, _ := time.LoadLocation("Europe/London")
		d.Now = now
		reg, err := registry.New(registry.Config{Store: d.Store, Location: london, RetentionDays: 365, Now: now,
			Log: d.Log, SecurityLog: d.Log, SubjectKey: d.SubjectKey})
		require.NoError(t, err)
		svc, err := notify.New(notify.Config{Store: d.Store, Feed: reg, BaseURL: base, Log: d.Log, Now: now, Holder: holder,
			Poll: 50 * time.Millisecond, AttemptTimeout: 2 * time.Second, RetryBase: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
			ErrorAttempts: 1000, Lease: 5 * time.Second})
		require.NoError(t, err)
		if len(tune) > 0 {
			cfg := notify.Config{Store: d.Store, Feed: reg, BaseURL: base, Log: d.Log, Now: now, Holder: holder}
			tune[0](&cfg)
			svc, err = notify.New(cfg)
			require.NoError(t, err)
		}
		d.Notify = svc
		n.svc = svc
		n.stop = func() {}
		if run {
			n.start(t)
		}
	}
}

func (n *notifier) start(t testing.TB) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.svc.Run(ctx) }()
	var once sync.Once
	n.stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(n.stop)
}

func subJSON(endpoint, content string, extra ...string) string {
	headers := ""
	if len(extra) > 0 {
		q := make([]string, len(extra))
		for i, h := range extra {
			q[i] = strconv.Quote(h)
		}
		headers = `,"header":[` + strings.Join(q, ",") + `]`
	}
	return fmt.Sprintf(`{"resourceType":"Subscription",
	 "meta":{"profile":["http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription"]},
	 "status":"requested","reason":"Unscheduled accesses to our children","criteria":%q,
	 "channel":{"type":"rest-hook","endpoint":%q,"payload":"application/fhir+json",
	  "_payload":{"extension":[{"url":"http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content","valueCode":%q}]}%s}}`,
		notify.TopicURL, endpoint, content, headers)
}

func (e *env) laSubToken(ods string) string {
	return e.laToken(ods, "system/EpisodeOfCare.*", "system/AuditEvent.read", subScopes)
}

// createSub creates a subscription as ods and waits for it to be active.
func (e *env) createSub(ods, body string) string {
	e.t.Helper()
	r := e.do(http.MethodPost, "Subscription", e.laSubToken(ods), body)
	require.Equal(e.t, http.StatusCreated, r.Code, r.Body.String())
	return jpath[string](e.t, r.json(), "id")
}

func (e *env) subStatus(ods, id string) string {
	r := e.do(http.MethodGet, "Subscription/"+id, e.laSubToken(ods), "")
	require.Equal(e.t, http.StatusOK, r.Code, r.Body.String())
	return jpath[string](e.t, r.json(), "status")
}

// feedIDs are the AuditEvent ids of ods's feed, oldest first.
func (e *env) feedIDs(ods string) []string {
	r := e.do(http.MethodGet, "AuditEvent?date=ge2026-01-01&_count=100", e.laToken(ods), "")
	require.Equal(e.t, http.StatusOK, r.Code, r.Body.String())
	var ids []string
	for _, m := range r.entries("match") {
		ids = append(ids, jpath[string](e.t, m, "id"))
	}
	return ids
}

func (e *env) audited(nhs string) {
	e.t.Helper()
	r := e.do(http.MethodGet, flagSearch(nhs), e.nurse(), "")
	require.Equal(e.t, http.StatusOK, r.Code, r.Body.String())
}

func seq(n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(i + 1)
	}
	return out
}

// An LA subscribes; the handshake arrives with its own header; an audited
// read of its child arrives as event 1 whose focus is the AuditEvent its
// feed serves; the header never comes back in a read.
func TestSubscriptionHandshakeAndDelivery(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		n := &notifier{}
		e := newEnv(t, b, withNotify(t, n, "p1", true, testNow()))
		e.putPlan(planSpec{id: "plan-a", nhs: nhsA, la: la1})
		rc := newReceiver(t)
		id := e.createSub(la1, subJSON(rc.url(), "id-only", "Authorization: Bearer la-secret-123"))

		eventually(t, "handshake", func() bool { return len(rc.notices("handshake")) == 1 })
		hs := rc.notices("handshake")[0]
		assert.Equal(t, "Bearer la-secret-123", hs.Header.Get("Authorization"), "the LA's header is sent")
		assert.Equal(t, "0", hs.Total)
		eventually(t, "active", func() bool { return e.subStatus(la1, id) == "active" })

		e.audited(nhsA)
		eventually(t, "event 1", func() bool { return len(rc.numbers()) == 1 })
		ev := rc.notices("event-notification")[0]
		assert.Equal(t, []int64{1}, ev.Numbers)
		assert.Equal(t, "1", ev.Total)
		feed := e.feedIDs(la1)
		require.Len(t, feed, 1)
		assert.Equal(t, []string{"AuditEvent/" + feed[0]}, ev.Focus, "the focus is the AuditEvent the LA's feed serves")
		e.requireValidR4(ev.Body)

		for _, path := range []string{"Subscription/" + id, "Subscription"} {
			r := e.do(http.MethodGet, path, e.laSubToken(la1), "")
			require.Equal(t, http.StatusOK, r.Code)
			assert.NotContains(t, r.Body.String(), "la-secret-123", "%s: channel.header is never returned", path)
			assert.NotContains(t, r.Body.String(), `"header"`, path)
		}
		r := e.do(http.MethodPut, "Subscription/"+id, e.laSubToken(la1),
			strings.Replace(subJSON(rc.url(), "id-only", "Authorization: Bearer la-secret-456"), `"resourceType":"Subscription",`, `"resourceType":"Subscription","id":"`+id+`",`, 1))
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		assert.NotContains(t, r.Body.String(), "la-secret-456", "Prefer: return=representation leaves the header out too")
		assert.NotContains(t, e.logs.String(), "la-secret", "the header is not logged")
	})
}

// A full-resource notification carries the AuditEvent as the LA's feed
// serves it: a child with plans at two LAs is read; LA001's notification
// never names LA002's plan.
func TestHazard_NotificationShowsAnotherLAsPlan(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		n := &notifier{}
		e := newEnv(t, b, withNotify(t, n, "p1", true, testNow()))
		e.putPlan(planSpec{id: "plan-la1-x", nhs: nhsA, la: la1})
		e.putPlan(planSpec{id: "plan-la2-secret", nhs: nhsA, la: la2})
		rc := newReceiver(t)
		id := e.createSub(la1, subJSON(rc.url(), "full-resource"))
		eventually(t, "active", func() bool { return e.subStatus(la1, id) == "active" })
		r := e.do(http.MethodGet, flagSearch(nhsA)+"&_id=plan-la1-x,plan-la2-secret", e.nurse(), "")
		require.Equal(t, http.StatusOK, r.Code)
		eventually(t, "event 1", func() bool { return len(rc.numbers()) == 1 })
		body := string(rc.notices("event-notification")[0].Body)
		assert.Contains(t, body, `"resourceType":"AuditEvent"`, "full-resource carries the AuditEvent")
		assert.NotContains(t, body, "plan-la2-secret", "LA001 is never told of LA002's plan")
		assert.NotContains(t, body, "2 plans found", "nor that another plan was found")
		assert.NotContains(t, body, nhsB)
		e.requireValidR4([]byte(body))
	})
}

// A silent read notifies nobody; a read of another LA's child does not
// notify this LA. The next audited read of its own child is its event 1:
// nothing was delivered, and nothing was numbered, before.
func TestHazard_SilentOrOtherLAReadNotifies(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		n := &notifier{}
		e := newEnv(t, b, withNotify(t, n, "p1", true, testNow()))
		e.putPlan(planSpec{id: "plan-a", nhs: nhsA, la: la1})
		e.putPlan(planSpec{id: "plan-b", nhs: nhsB, la: la2})
		rc := newReceiver(t)
		id := e.createSub(la1, subJSON(rc.url(), "id-only"))
		eventually(t, "active", func() bool { return e.subStatus(la1, id) == "active" })

		r := e.do(http.MethodGet, flagSearch(nhsA)+"&silent=true", e.gp(), "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		e.audited(nhsB)                    // LA002's child
		time.Sleep(300 * time.Millisecond) // several polls
		assert.Empty(t, rc.numbers(), "a silent read or another LA's child notifies nothing")

		e.audited(nhsA)
		eventually(t, "own child's read", func() bool { return len(rc.numbers()) == 1 })
		assert.Equal(t, []int64{1}, rc.numbers(), "the first notifying access is event 1")
	})
}

// The receiver is down for a while: every access is delivered once it is
// back, in order, numbered without gaps.
func TestSubscriptionReceiverDownThenBack(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		n := &notifier{}
		e := newEnv(t, b, withNotify(t, n, "p1", true, testNow()))
		e.putPlan(planSpec{id: "plan-a", nhs: nhsA, la: la1})
		rc := newReceiver(t)
		id := e.createSub(la1, subJSON(rc.url(), "id-only"))
		eventually(t, "active", func() bool { return e.subStatus(la1, id) == "active" })

		rc.down.Store(true)
		for i := 0; i < 6; i++ {
			e.audited(nhsA)
		}
		before := rc.hits.Load()
		eventually(t, "failed attempts", func() bool { return rc.hits.Load() >= before+3 })
		st := e.do(http.MethodGet, "Subscription/"+id+"/$status", e.laSubToken(la1), "")
		require.Equal(t, http.StatusOK, st.Code, st.Body.String())
		assert.Contains(t, st.Body.String(), `"valueString":"6"`, "$status counts the events numbered")

		rc.down.Store(false)
		eventually(t, "all delivered", func() bool { return len(rc.numbers()) >= 6 })
		assert.Equal(t, seq(6), rc.numbers(), "in order, no gaps, none twice")
		assert.Equal(t, "active", e.subStatus(la1, id))
	})
}

// Accesses committed while no process delivers (a crash between commit and
// delivery) are delivered by the next process over the same database.
func TestSubscriptionRestartBetweenCommitAndDelivery(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		rc := newReceiver(t)
		st := b.open(t)
		now := testNow()
		shared := backend{name: b.name, open: func(testing.TB) store.Store { return st }}

		n1 := &notifier{}
		e1 := newEnv(t, shared, withNotify(t, n1, "p1", true, now))
		e1.putPlan(planSpec{id: "plan-a", nhs: nhsA, la: la1})
		id := e1.createSub(la1, subJSON(rc.url(), "id-only"))
		eventually(t, "active", func() bool { return e1.subStatus(la1, id) == "active" })
		n1.stop() // the process dies
		for i := 0; i < 3; i++ {
			e1.audited(nhsA)
		}
		time.Sleep(200 * time.Millisecond)
		require.Empty(t, rc.numbers(), "nothing is delivered while no process runs")

		// A new process: its own holder; the dead one's lease runs out.
		n2 := &notifier{}
		newEnv(t, shared, withNotify(t, n2, "p2", true, func() time.Time { return now().Add(time.Minute) }))
		eventually(t, "delivered after restart", func() bool { return len(rc.numbers()) >= 3 })
		assert.Equal(t, seq(3), rc.numbers())
	})
}

// Two server processes on one MongoDB database deliver each event once per
// subscription: one holds the subscription's lease.
func TestSubscriptionTwoProcessesDeliverOnce(t *testing.T) {
	uris := map[string]string{"ferretdb": ferret.URI}
	if uri := os.Getenv(mongotest.EnvURI); uri != "" {
		uris["mongodb"] = uri
	}
	for name, uri := range uris {
		t.Run(name, func(t *testing.T) {
			db := mongotest.FreshDB()
			openDB := func() store.Store {
				s, err := mongo.Open(context.Background(), uri, db, mongo.Options{})
				require.NoError(t, err)
				return s
			}
			st1, st2 := openDB(), openDB()
			rc := newReceiver(t)
			now := testNow()
			n1, n2 := &notifier{}, &notifier{}
			e1 := newEnv(t, backend{name: name, open: func(testing.TB) store.Store { return st1 }}, withNotify(t, n1, "p1", true, now))
			e2 := newEnv(t, backend{name: name, open: func(testing.TB) store.Store { return st2 }}, withNotify(t, n2, "p2", true, now))
			e1.putPlan(planSpec{id: "plan-a", nhs: nhsA, la: la1})
			ids := []string{e1.createSub(la1, subJSON(rc.url(), "id-only")), e2.createSub(la1, subJSON(rc.url(), "id-only"))}
			for _, id := range ids {
				eventually(t, "active", func() bool { return e1.subStatus(la1, id) == "active" })
			}
			for i := 0; i < 8; i++ {
				[]*env{e1, e2}[i%2].audited(nhsA)
			}
			eventually(t, "all delivered", func() bool { return len(rc.numbers()) >= 16 })
			time.Sleep(300 * time.Millisecond)
			per := map[string][]int64{}
			for _, nt := range rc.notices("event-notification") {
				sub := ""
				var m map[string]any
				require.NoError(t, json.Unmarshal(nt.Body, &m))
				sub = jpath[string](t, m, "entry", 0, "resource", "parameter", 0, "valueReference", "reference")
				per[sub] = append(per[sub], nt.Numbers...)
			}
			require.Len(t, per, 2)
			for sub, nums := range per {
				assert.Equal(t, seq(8), nums, "%s: each event once, in order", sub)
			}
		})
	}
}

// Accesses that keep coming are gathered: one notification carries a
// busy moment's accesses, rather than one (and two outbox writes beside
// the audit's) per handful. Reads keep arriving for 3 s while the
// subscription gathers for half a second; every one arrives, in order, in
// a few notifications, not dozens.
func TestNotificationsGatherABusyMoment(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		n := &notifier{}
		e := newEnv(t, b, withNotify(t, n, "p1", true, testNow(), func(c *notify.Config) {
			c.Gather, c.Poll = 500*time.Millisecond, time.Hour
		}))
		e.putPlan(planSpec{id: "plan-a", nhs: nhsA, la: la1})
		rc := newReceiver(t)
		id := e.createSub(la1, subJSON(rc.url(), "id-only"))
		eventually(t, "active", func() bool { return e.subStatus(la1, id) == "active" })
		start := time.Now()
		reads := 0
		for time.Since(start) < 3*time.Second {
			e.audited(nhsA)
			reads++
			time.Sleep(5 * time.Millisecond)
		}
		eventually(t, "every access", func() bool { return len(rc.numbers()) >= reads })
		assert.Equal(t, seq(reads), rc.numbers(), "every access once, in order, gap-free")
		sent := len(rc.notices("event-notification"))
		t.Logf("%d accesses in %d notifications", reads, sent)
		assert.LessOrEqual(t, sent, 12, "a busy moment's accesses travel together")
	})
}

// outboxWrites is the real store, counting the delivery's outbox writes.
type outboxWrites struct {
	store.Store
	store.Subscriptions
	appends, records atomic.Int64
}

func (o *outboxWrites) AppendSubEvents(ctx context.Context, id, holder string, epoch int64, from, to string, evs []store.SubEvent) error {
	o.appends.Add(1)
	return o.Subscriptions.AppendSubEvents(ctx, id, holder, epoch, from, to, evs)
}

func (o *outboxWrites) SetSubDelivery(ctx context.Context, id, holder string, epoch, version int64, d store.Delivery) error {
	o.records.Add(1)
	return o.Subscriptions.SetSubDelivery(ctx, id, holder, epoch, version, d)
}

// A backlog (the endpoint was down) goes out in notifications of
// max-count events, in order, and costs the outbox a few writes, not two
// per notification: the audit's writer, which clinicians' reads wait for,
// commits them.
func TestNotificationsOfABacklogWriteTheOutboxOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		n := &notifier{}
		var ow *outboxWrites
		e := newEnv(t, b, withNotify(t, n, "p1", true, testNow(), func(c *notify.Config) {
			ow = &outboxWrites{Store: c.Store, Subscriptions: c.Store.(store.Subscriptions)}
			c.Store, c.Poll, c.RetryBase, c.RetryMax = ow, 50*time.Millisecond, 20*time.Millisecond, 100*time.Millisecond
		}))
		e.putPlan(planSpec{id: "plan-a", nhs: nhsA, la: la1})
		rc := newReceiver(t)
		body := strings.Replace(subJSON(rc.url(), "id-only"), `"type":"rest-hook",`,
			`"type":"rest-hook","extension":[{"url":"http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-max-count","valuePositiveInt":2}],`, 1)
		id := e.createSub(la1, body)
		eventually(t, "active", func() bool { return e.subStatus(la1, id) == "active" })

		rc.down.Store(true)
		const reads = 40
		for i := 0; i < reads; i++ {
			e.audited(nhsA)
		}
		before := rc.hits.Load()
		eventually(t, "failed attempts", func() bool { return rc.hits.Load() >= before+2 })
		eventually(t, "all numbered", func() bool {
			sub, err := ow.GetSubscription(context.Background(), id)
			return err == nil && sub.Events == reads
		})
		appends, records := ow.appends.Load(), ow.records.Load()
		rc.down.Store(false)
		eventually(t, "all delivered", func() bool { return len(rc.numbers()) >= reads })
		assert.Equal(t, seq(reads), rc.numbers(), "in order, no gaps, none twice")
		sent := rc.notices("event-notification")
		for _, nt := range sent {
			assert.LessOrEqual(t, len(nt.Numbers), 2, "max-count")
		}
		eventually(t, "recorded", func() bool {
			sub, err := ow.GetSubscription(context.Background(), id)
			return err == nil && sub.Acked == reads
		})
		t.Logf("%d notifications; outbox writes for the backlog: %d appends, %d records", len(sent), ow.appends.Load()-appends, ow.records.Load()-records)
		assert.LessOrEqual(t, ow.records.Load()-records, int64(3), "the acknowledgements of a run of notifications are recorded together")
		assert.Zero(t, ow.appends.Load()-appends, "nothing left to number")
	})
}

// A slow endpoint does not slow clinicians' reads: delivery is off the
// request path. The receiver holds every request; reads still answer.
func TestHazard_SlowEndpointBlocksReads(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		n := &notifier{}
		e := newEnv(t, b, withNotify(t, n, "p1", true, testNow()))
		e.putPlan(planSpec{id: "plan-a", nhs: nhsA, la: la1})
		rc := newReceiver(t)
		id := e.createSub(la1, subJSON(rc.url(), "id-only"))
		eventually(t, "active", func() bool { return e.subStatus(la1, id) == "active" })
		hold := make(chan struct{})
		rc.mu.Lock()
		rc.hold = hold
		rc.mu.Unlock()
		e.audited(nhsA)
		eventually(t, "a delivery waiting at the endpoint", func() bool { return rc.hits.Load() >= 2 })
		for i := 0; i < 5; i++ {
			e.audited(nhsA) // answers while the endpoint holds the delivery
		}
		close(hold)
		eventually(t, "delivered", func() bool { return len(rc.numbers()) >= 6 })
		assert.Equal(t, seq(6), rc.numbers())
	})
}

// Deleting a subscription stops its delivery at once.
func TestHazard_DeletedSubscriptionStillDelivers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		n := &notifier{}
		e := newEnv(t, b, withNotify(t, n, "p1", true, testNow()))
		e.putPlan(planSpec{id: "plan-a", nhs: nhsA, la: la1})
		rc := newReceiver(t)
		id := e.createSub(la1, subJSON(rc.url(), "id-only"))
		eventually(t, "active", func() bool { return e.subStatus(la1, id) == "active" })
		rc.down.Store(true) // events pile up, retried
		e.audited(nhsA)
		before := rc.hits.Load()
		eventually(t, "retries", func() bool { return rc.hits.Load() >= before+2 })
		r := e.do(http.MethodDelete, "Subscription/"+id, e.laSubToken(la1), "")
		require.Equal(t, http.StatusNoContent, r.Code, r.Body.String())
		rc.down.Store(false)
		e.audited(nhsA)
		after := rc.hits.Load()
		time.Sleep(400 * time.Millisecond)
		assert.LessOrEqual(t, rc.hits.Load(), after+1, "at most the attempt in flight at the delete")
		assert.Empty(t, rc.numbers(), "nothing is delivered after the delete")
		assert.Equal(t, http.StatusNotFound, e.do(http.MethodGet, "Subscription/"+id, e.laSubToken(la1), "").Code)
	})
}

// Management: scope, ownership (another LA's is 404), validation (422,
// nothing stored), $events for what an endpoint missed.
func TestSubscriptionManagement(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		n := &notifier{}
		e := newEnv(t, b, withNotify(t, n, "p1", true, testNow()))
		e.putPlan(planSpec{id: "plan-a", nhs: nhsA, la: la1})
		rc := newReceiver(t)
		good := subJSON(rc.url(), "id-only")

		for _, tc := range []struct {
			name, token, body string
			status            int
		}{
			{"user-403", e.nurse(), good, 403},
			{"no-scope-403", e.laToken(la1), good, 403},
			{"plain-http-422", e.laSubToken(la1), subJSON("http://example.org/hook", "id-only"), 422},
			{"metadata-address-422", e.laSubToken(la1), subJSON("https://169.254.169.254/latest/meta-data", "id-only"), 422},
			{"private-address-422", e.laSubToken(la1), subJSON("https://10.1.2.3/hook", "id-only"), 422},
			{"other-topic-422", e.laSubToken(la1), strings.Replace(good, notify.TopicURL, "https://example.org/topic", 1), 422},
			{"bad-content-422", e.laSubToken(la1), subJSON(rc.url(), "everything"), 422},
			{"websocket-422", e.laSubToken(la1), strings.Replace(good, `"rest-hook"`, `"websocket"`, 1), 422},
			{"bad-header-422", e.laSubToken(la1), subJSON(rc.url(), "id-only", "no colon here"), 422},
			{"not-r4-400", e.laSubToken(la1), `{"resourceType":"Subscription","status":"nonsense"}`, 400},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := e.do(http.MethodPost, "Subscription", tc.token, tc.body)
				assert.Equal(t, tc.status, r.Code, r.Body.String())
			})
		}
		r := e.do(http.MethodGet, "Subscription", e.laSubToken(la1), "")
		require.Equal(t, http.StatusOK, r.Code)
		assert.Equal(t, 0, r.total(), "refused subscriptions are not stored")

		id := e.createSub(la1, good)
		other := e.laSubToken(la2)
		for _, req := range []struct{ method, path, body string }{
			{"GET", "Subscription/" + id, ""}, {"DELETE", "Subscription/" + id, ""},
			{"PUT", "Subscription/" + id, strings.Replace(good, `"resourceType":"Subscription",`, `"resourceType":"Subscription","id":"`+id+`",`, 1)},
			{"GET", "Subscription/" + id + "/$status", ""}, {"GET", "Subscription/" + id + "/$events", ""},
		} {
			r := e.do(req.method, req.path, other, req.body)
			assert.Equal(t, http.StatusNotFound, r.Code, "%s %s by another LA: %s", req.method, req.path, r.Body.String())
		}
		r = e.do(http.MethodGet, "Subscription", other, "")
		assert.Equal(t, 0, r.total(), "another LA's subscriptions are invisible")

		eventually(t, "active", func() bool { return e.subStatus(la1, id) == "active" })
		for i := 0; i < 3; i++ {
			e.audited(nhsA)
		}
		eventually(t, "delivered", func() bool { return len(rc.numbers()) >= 3 })
		ev := e.do(http.MethodGet, "Subscription/"+id+"/$events?eventsSinceNumber=2&content=full-resource", e.laSubToken(la1), "")
		require.Equal(t, http.StatusOK, ev.Code, ev.Body.String())
		got := parseNotice(t, ev.Body.Bytes())
		assert.Equal(t, "query-event", got.Type)
		assert.Equal(t, []int64{2, 3}, got.Numbers)
		assert.Len(t, got.Focus, 2)
		bad := e.do(http.MethodGet, "Subscription/"+id+"/$events?eventsSinceNumber=x", e.laSubToken(la1), "")
		assert.Equal(t, http.StatusBadRequest, bad.Code)
	})
}

// An endpoint that keeps failing turns the subscription to error ($status
// says so); the authority updates it to requested, the handshake succeeds
// and delivery resumes at the first unacknowledged event.
func TestSubscriptionErrorThenReactivated(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		n := &notifier{}
		now := testNow()
		e := newEnv(t, b, withNotify(t, n, "p1", true, now, func(c *notify.Config) {
			c.Poll, c.RetryBase, c.RetryMax = 50*time.Millisecond, 10*time.Millisecond, 50*time.Millisecond
			c.ErrorAttempts, c.ErrorAfter = 3, time.Millisecond
		}))
		e.putPlan(planSpec{id: "plan-a", nhs: nhsA, la: la1})
		rc := newReceiver(t)
		body := subJSON(rc.url(), "id-only")
		id := e.createSub(la1, body)
		eventually(t, "active", func() bool { return e.subStatus(la1, id) == "active" })
		rc.down.Store(true)
		e.audited(nhsA)
		e.audited(nhsA)
		eventually(t, "error", func() bool { return e.subStatus(la1, id) == "error" })
		st := e.do(http.MethodGet, "Subscription/"+id+"/$status", e.laSubToken(la1), "")
		require.Equal(t, http.StatusOK, st.Code)
		assert.Contains(t, st.Body.String(), `"name":"status","valueCode":"error"`)
		hits := rc.hits.Load()
		time.Sleep(200 * time.Millisecond)
		assert.Equal(t, hits, rc.hits.Load(), "a subscription in error is not delivered")

		rc.down.Store(false)
		up := strings.Replace(body, `"resourceType":"Subscription",`, `"resourceType":"Subscription","id":"`+id+`",`, 1)
		r := e.do(http.MethodPut, "Subscription/"+id, e.laSubToken(la1), up)
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		eventually(t, "delivered after reactivation", func() bool { return len(rc.numbers()) >= 2 })
		assert.Equal(t, seq(2), rc.numbers())
		assert.Equal(t, "active", e.subStatus(la1, id))
	})
}

// With backport-heartbeat-period set, an idle subscription gets heartbeat
// notifications (no events). The delivery's clock runs 100 times faster
// than real time here, so the shortest period (10 s) passes in 0.1 s.
func TestSubscriptionHeartbeat(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		start, t0 := time.Now(), time.Date(2026, 6, 15, 10, 0, 0, 0, time.UTC)
		fast := func() time.Time { return t0.Add(100 * time.Since(start)) }
		n := &notifier{}
		e := newEnv(t, b, withNotify(t, n, "p1", true, fast))
		rc := newReceiver(t)
		body := strings.Replace(subJSON(rc.url(), "id-only"), `"type":"rest-hook",`,
			`"type":"rest-hook","extension":[{"url":"http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-heartbeat-period","valueUnsignedInt":10}],`, 1)
		e.createSub(la1, body)
		eventually(t, "heartbeats", func() bool { return len(rc.notices("heartbeat")) >= 2 })
		hb := rc.notices("heartbeat")[0]
		assert.Equal(t, "active", hb.Status)
		assert.Empty(t, hb.Numbers, "a heartbeat carries no event")
		e.requireValidR4(hb.Body)
	})
}

// The CapabilityStatement lists Subscription with the one topic.
func TestCapabilityStatementListsTopic(t *testing.T) {
	e := newEnv(t, backends()[0])
	r := e.do(http.MethodGet, "metadata", "", "")
	require.Equal(t, http.StatusOK, r.Code)
	var cs struct {
		Rest []struct {
			Resource []struct {
				Type      string
				Extension []struct{ URL, ValueCanonical string }
				Operation []struct{ Name string }
			}
		}
	}
	require.NoError(t, json.Unmarshal(r.Body.Bytes(), &cs))
	found := false
	for _, res := range cs.Rest[0].Resource {
		if res.Type != "Subscription" {
			continue
		}
		found = true
		require.Len(t, res.Extension, 1)
		assert.Equal(t, notify.TopicExtension, res.Extension[0].URL)
		assert.Equal(t, notify.TopicURL, res.Extension[0].ValueCanonical)
		var ops []string
		for _, op := range res.Operation {
			ops = append(ops, op.Name)
		}
		assert.ElementsMatch(t, []string{"status", "events"}, ops)
	}
	assert.True(t, found, "Subscription is listed")
}
