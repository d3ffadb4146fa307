package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"cpis/fhir"
	"cpis/store"
)

// Delivery. Each subscription has an outbox in the store: the authority's
// feed cursor up to which its accesses have been given event numbers, and
// the last number the endpoint acknowledged. A round (every Poll, or at
// once when an audited read nudges) numbers the feed's new accesses and
// sends what is unacknowledged, oldest first, in notifications of at most
// max-count events; only a 2xx moves the acknowledged number. So after a
// crash or restart delivery resumes at the first unacknowledged event
// (at-least-once: the event numbers let the receiver drop repeats), and one
// process at a time delivers a subscription: the one holding its lease in
// the store, whose writes are fenced by the lease's epoch.

// feedPage is how many accesses one feed read numbers: a busy moment's
// accesses in one outbox write (numbering's writes join the audit's group
// commits, so their count, more than their size, is what clinicians' reads
// pay).
const feedPage = 1000

// recordEvery bounds how long a step sends notifications (maxSteps of them
// at most) before it records what the endpoint acknowledged: one outbox
// write for a run of notifications, and after a crash at most this much is
// sent again (the event numbers let the receiver drop repeats).
const recordEvery = time.Second

// maxSteps bounds a step's turns (each numbering, then sending at most
// maxSteps notifications), so one busy subscription does not hold its lease
// for ever.
const maxSteps = 64

// Run delivers until ctx is done, then waits for attempts in flight.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Poll)
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		s.round(ctx, &wg)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
			// Let the accesses of a busy moment gather, so one
			// notification carries them and the outbox's writes stay
			// few beside the audit's.
			select {
			case <-ctx.Done():
				return
			case <-time.After(s.cfg.Gather):
			}
		}
	}
}

// round starts a delivery step for every subscription that is not off, not
// already being delivered here and not leased to another live process.
func (s *Service) round(ctx context.Context, wg *sync.WaitGroup) {
	subs, err := s.st.ListSubscriptions(ctx, "")
	if err != nil {
		if ctx.Err() == nil {
			s.cfg.Log.Error("notification delivery: listing subscriptions failed", slog.String("error", err.Error()))
		}
		return
	}
	now := s.now()
	queue := 0
	for _, sub := range subs {
		if sub.Holder == s.cfg.Holder {
			queue += int(sub.Events - sub.Acked)
		}
		if sub.Status == "off" || (sub.Holder != "" && sub.Holder != s.cfg.Holder && !sub.LeaseUntil.Before(now)) {
			continue
		}
		s.mu.Lock()
		if s.running[sub.ID] != nil {
			s.mu.Unlock()
			continue
		}
		sctx, cancel := context.WithCancel(ctx)
		s.running[sub.ID] = cancel
		s.mu.Unlock()
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.running, id)
				s.mu.Unlock()
				cancel()
			}()
			s.step(sctx, id)
		}(sub.ID)
	}
	s.mu.Lock()
	for id := range s.leases { // subscriptions deleted meanwhile
		if !slices.ContainsFunc(subs, func(x store.Subscription) bool { return x.ID == id }) && s.running[id] == nil {
			delete(s.leases, id)
		}
	}
	s.mu.Unlock()
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.Queue(queue)
	}
}

// step delivers one subscription while it has something to send.
func (s *Service) step(ctx context.Context, id string) {
	s.mu.Lock()
	until := s.leases[id] // when this process's lease ends, as it last took it
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.leases[id] = until
		s.mu.Unlock()
	}()
	for i := 0; i < maxSteps && ctx.Err() == nil; i++ {
		var sub store.Subscription
		var err error
		held := true
		if now := s.now(); until.Sub(now) > s.cfg.Lease/2 {
			// The lease is fresh: read the subscription (the authority may
			// have changed it) without renewing. Writes stay fenced by the
			// epoch, so a lease lost meanwhile still stops this process.
			sub, err = s.st.GetSubscription(ctx, id)
			held = err == nil && sub.Holder == s.cfg.Holder
		} else {
			sub, held, err = s.st.ClaimSubscription(ctx, id, s.cfg.Holder, now, s.cfg.Lease)
			until = now.Add(s.cfg.Lease)
		}
		if err != nil || !held || sub.Status == "off" {
			s.logErr(ctx, id, "claiming the lease", err)
			if !held || err != nil {
				until = time.Time{}
			}
			return
		}
		ch, err := channelOf(sub.Body)
		if err != nil {
			s.logErr(ctx, id, "reading the channel", err)
			return
		}
		numbered, err := s.number(ctx, &sub, ch)
		if err != nil {
			s.logErr(ctx, id, "numbering events", err)
			return
		}
		switch {
		case sub.Status == "requested":
			if !s.handshake(ctx, sub, ch) {
				return
			}
		case sub.Status == "active" && sub.Acked < sub.Events:
			if s.now().Before(sub.NextAttempt) {
				return // backing off; the poll comes back
			}
			all, ok := s.send(ctx, sub, ch)
			if !ok || all {
				// All sent: what arrives meanwhile gathers for the next
				// round, rather than a notification (and outbox writes
				// beside the audit's) per handful of accesses.
				return
			}
		case sub.Status == "active" && ch.Heartbeat > 0 && !numbered:
			s.heartbeat(ctx, sub, ch)
			return
		default:
			if !numbered {
				return
			}
		}
	}
}

func (s *Service) logErr(ctx context.Context, id, what string, err error) {
	if err == nil || ctx.Err() != nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrVersionConflict) {
		return
	}
	s.cfg.Log.Error("notification delivery: "+what+" failed", slog.String("subscription", id), slog.String("error", err.Error()))
}

// number gives event numbers to the feed's accesses after the outbox's
// cursor: every one, or (a subscription filtered by plan type) those about
// a child with a plan of a type asked for; the others move the cursor and
// take no number, so numbers stay gap-free. It reads the feed's heads only
// (no AuditEvent is read to be numbered) and reports whether it numbered
// any.
func (s *Service) number(ctx context.Context, sub *store.Subscription, ch channel) (bool, error) {
	got := false
	for {
		recs, next, err := s.cfg.Feed.LAFeedHeads(ctx, sub.Owner, sub.Start, sub.Cursor, feedPage)
		if err != nil {
			return got, err
		}
		if len(recs) == 0 {
			return got, nil
		}
		evs := make([]store.SubEvent, 0, len(recs))
		var types map[string][]string // by subject, for this page
		for _, r := range recs {
			if len(ch.Types) > 0 {
				if types == nil {
					types = map[string][]string{}
				}
				t, ok := types[r.Subject]
				if !ok {
					if t, err = s.cfg.Feed.LAPlanTypes(ctx, sub.Owner, r.Subject); err != nil {
						return got, err
					}
					types[r.Subject] = t
				}
				if !slices.ContainsFunc(t, func(x string) bool { return slices.Contains(ch.Types, x) }) {
					continue
				}
			}
			evs = append(evs, store.SubEvent{Number: sub.Events + int64(len(evs)) + 1, Seq: r.Seq, Recorded: r.Recorded, ID: r.ID})
		}
		if err := s.st.AppendSubEvents(ctx, sub.ID, s.cfg.Holder, sub.Epoch, sub.Cursor, next, evs); err != nil {
			return got, err
		}
		sub.Cursor = next
		if len(evs) > 0 {
			got = true
			sub.Events = evs[len(evs)-1].Number
		}
		if len(recs) < feedPage {
			return got, nil
		}
	}
}

func deliveryOf(sub store.Subscription) store.Delivery {
	return store.Delivery{Status: sub.Status, Acked: sub.Acked, Failures: sub.Failures, FailingSince: sub.FailingSince,
		NextAttempt: sub.NextAttempt, LastSent: sub.LastSent, Error: sub.Error}
}

func (s *Service) record(ctx context.Context, sub store.Subscription, d store.Delivery) bool {
	err := s.st.SetSubDelivery(ctx, sub.ID, s.cfg.Holder, sub.Epoch, sub.Version, d)
	s.logErr(ctx, sub.ID, "recording a delivery", err)
	return err == nil
}

// handshake sends the handshake of a requested subscription: active when
// the endpoint takes it, error when not.
func (s *Service) handshake(ctx context.Context, sub store.Subscription, ch channel) bool {
	sub.Status = "requested"
	body, err := s.notification(ctx, sub, "handshake", Empty, nil)
	if err != nil {
		return false
	}
	err = s.post(ctx, ch, body, "handshake")
	if ctx.Err() != nil {
		return false
	}
	d := deliveryOf(sub)
	d.Failures, d.FailingSince, d.NextAttempt = 0, time.Time{}, time.Time{}
	if err != nil {
		d.Status, d.Error = "error", "The handshake failed: "+err.Error()
		s.record(ctx, sub, d)
		return false
	}
	d.Status, d.Error, d.LastSent = "active", "", s.now()
	return s.record(ctx, sub, d)
}

// heartbeat sends a heartbeat when none was sent for the period.
func (s *Service) heartbeat(ctx context.Context, sub store.Subscription, ch channel) {
	last := sub.LastSent
	if last.IsZero() {
		last = sub.Start
	}
	if s.now().Sub(last) < ch.Heartbeat || s.now().Before(sub.NextAttempt) {
		return
	}
	body, err := s.notification(ctx, sub, "heartbeat", Empty, nil)
	if err != nil {
		return
	}
	if err := s.post(ctx, ch, body, "heartbeat"); err != nil {
		if ctx.Err() == nil {
			s.failed(ctx, sub, deliveryOf(sub), err)
		}
		return
	}
	d := deliveryOf(sub)
	d.LastSent = s.now()
	s.record(ctx, sub, d)
}

// send delivers unacknowledged events, oldest first, in notifications of
// at most max-count events, for at most recordEvery or maxSteps
// notifications, and records what the endpoint acknowledged once at the
// end, not after each notification (the step then renews its lease as
// needed and sends on). It reports whether everything numbered was sent,
// and whether all went well.
func (s *Service) send(ctx context.Context, sub store.Subscription, ch channel) (all, ok bool) {
	d := deliveryOf(sub)
	var lags []time.Duration // of the events acknowledged, not yet recorded
	record := func() bool {
		if len(lags) == 0 {
			return true
		}
		if !s.record(ctx, sub, d) {
			return false
		}
		if s.cfg.Metrics != nil {
			for _, l := range lags {
				s.cfg.Metrics.Lag(l)
			}
		}
		return true
	}
	start := s.now()
	var held []store.SubEvent // read ahead, a feed page at a time
	for n := 0; d.Acked < sub.Events && n < maxSteps && s.now().Sub(start) < recordEvery; n++ {
		if len(held) == 0 {
			var err error
			if held, err = s.st.SubEvents(ctx, sub.ID, d.Acked, max(feedPage, ch.MaxCount)); err != nil || len(held) == 0 {
				s.logErr(ctx, sub.ID, "reading events", err)
				record()
				return false, false
			}
		}
		evs := held[:min(len(held), ch.MaxCount)]
		held = held[len(evs):]
		body, err := s.notification(ctx, sub, "event-notification", ch.Content, evs)
		if err != nil {
			s.logErr(ctx, sub.ID, "building a notification", err)
			record()
			return false, false
		}
		if err := s.post(ctx, ch, body, "event-notification"); err != nil {
			if ctx.Err() == nil && record() {
				s.failed(ctx, sub, d, err)
			}
			return false, false
		}
		d.Acked, d.LastSent, d.Failures, d.FailingSince, d.NextAttempt, d.Error = evs[len(evs)-1].Number, s.now(), 0, time.Time{}, time.Time{}, ""
		for _, e := range evs {
			lags = append(lags, d.LastSent.Sub(e.Recorded))
		}
	}
	return d.Acked >= sub.Events, record()
}

// failed records a failed attempt on top of d, the delivery as it stands
// (acknowledgements of this step included): the next one after an exponential
// backoff with jitter; after ErrorAttempts failures over ErrorAfter the
// subscription turns to error (the authority sees it in $status and
// fetches what it missed with $events).
func (s *Service) failed(ctx context.Context, sub store.Subscription, d store.Delivery, cause error) {
	now := s.now()
	d.Failures++
	if d.FailingSince.IsZero() {
		d.FailingSince = now
	}
	d.NextAttempt = now.Add(s.backoff(d.Failures))
	d.Error = cause.Error()
	if d.Failures >= s.cfg.ErrorAttempts && now.Sub(d.FailingSince) >= s.cfg.ErrorAfter {
		d.Status = "error"
	}
	s.record(ctx, sub, d)
}

// backoff is RetryBase doubled per failure up to RetryMax, then between
// half of it and all of it at random, so endpoints coming back are not
// hit by every subscription at once.
func (s *Service) backoff(failures int) time.Duration {
	d := s.cfg.RetryBase
	for i := 1; i < failures && d < s.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, s.cfg.RetryMax)
	return d/2 + rand.N(d/2+1)
}

// errStatus is an endpoint's answer that is not a 2xx.
type errStatus int

func (e errStatus) Error() string { return fmt.Sprintf("the endpoint answered %d", int(e)) }

// post sends one notification, within the attempt timeout and the
// endpoint's concurrency bound. The error names no URL and no header.
func (s *Service) post(ctx context.Context, ch channel, body []byte, kind string) error {
	u, err := url.Parse(ch.Endpoint)
	if err != nil {
		return errors.New("the endpoint is not a URL")
	}
	sem := s.sem(u.Host)
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-sem }()
	timeout := s.cfg.AttemptTimeout
	if ch.Timeout > 0 && ch.Timeout < timeout {
		timeout = ch.Timeout
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, ch.Endpoint, bytes.NewReader(body))
	if err != nil {
		return errors.New("the endpoint is not a URL")
	}
	for _, h := range ch.Headers {
		req.Header.Add(h[0], h[1])
	}
	req.Header.Set("Content-Type", fhir.MIME+"; charset=utf-8")
	resp, err := s.cfg.Client.Do(req)
	outcome := "ok"
	switch {
	case err != nil:
		outcome = "failed"
		switch {
		case errors.Is(err, errInternalAddress):
			// Said as it is (no URL in it): the authority and the operator
			// can see in $status why nothing arrives.
			err = errInternalAddress
		case actx.Err() == context.DeadlineExceeded:
			err = errors.New("the endpoint did not answer in time")
		default:
			err = errors.New("the endpoint could not be reached")
		}
	default:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			outcome, err = "failed", errStatus(resp.StatusCode)
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.Delivered(kind, outcome)
	}
	return err
}

func (s *Service) sem(host string) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.sems[host]
	if c == nil {
		c = make(chan struct{}, s.cfg.PerEndpoint)
		s.sems[host] = c
	}
	return c
}
