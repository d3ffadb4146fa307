package handlers_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/handlers/notify"
	"cpis/store"
)

// Subscriptions stay bounded over time (a cap per authority, acknowledged
// events pruned after retention) and may be filtered by plan type: real
// engine, both stores, a real receiver and the real delivery.

// subFiltered is subJSON with a backport-filter-criteria on criteria.
func subFiltered(endpoint, content, filter string) string {
	crit := `"criteria":"` + notify.TopicURL + `",`
	return strings.Replace(subJSON(endpoint, content), crit, crit+
		`"_criteria":{"extension":[{"url":"http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria","valueString":"`+filter+`"}]},`, 1)
}

// One authority cannot make the server keep an unbounded number of
// subscriptions (each an outbox numbered and delivered for ever): the
// create beyond the cap is refused with an OperationOutcome, nothing is
// stored and no handshake is sent. Another authority is not affected, and
// a deleted subscription frees its place.
func TestHazard_UnboundedSubscriptionsPerLA(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		n := &notifier{}
		e := newEnv(t, b, withNotify(t, n, "p1", true, testNow(), func(c *notify.Config) {
			c.Poll, c.MaxPerLA = 50*time.Millisecond, 2
		}))
		rc := newReceiver(t)
		first := e.createSub(la1, subJSON(rc.url(), "id-only"))
		e.createSub(la1, subJSON(rc.url(), "id-only"))
		eventually(t, "two handshakes", func() bool { return len(rc.notices("handshake")) == 2 })

		r := e.do(http.MethodPost, "Subscription", e.laSubToken(la1), subJSON(rc.url(), "id-only"))
		require.Equal(t, http.StatusUnprocessableEntity, r.Code, r.Body.String())
		assert.Equal(t, "OperationOutcome", jpath[string](t, r.json(), "resourceType"))
		assert.Contains(t, r.Body.String(), "already holds 2 subscriptions", "the refusal says why")
		list := e.do(http.MethodGet, "Subscription", e.laSubToken(la1), "")
		require.Equal(t, http.StatusOK, list.Code)
		assert.Equal(t, 2, list.total(), "the refused subscription is not stored")
		time.Sleep(200 * time.Millisecond) // several polls
		assert.Equal(t, int64(2), rc.hits.Load(), "no handshake for the refused subscription")

		e.createSub(la2, subJSON(rc.url(), "id-only")) // another LA's cap is its own
		require.Equal(t, http.StatusNoContent, e.do(http.MethodDelete, "Subscription/"+first, e.laSubToken(la1), "").Code)
		e.createSub(la1, subJSON(rc.url(), "id-only"))
	})
}

// Acknowledged events older than retention are pruned from the outbox (the
// sweep); $events for a pruned range says they are no longer held instead
// of answering an empty Bundle, and an event the endpoint has not
// acknowledged is never pruned, whatever its age.
func TestSubscriptionPrunedEvents(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		n := &notifier{}
		e := newEnv(t, b, withNotify(t, n, "p1", true, testNow()))
		e.putPlan(planSpec{id: "plan-a", nhs: nhsA, la: la1})
		rc := newReceiver(t)
		id := e.createSub(la1, subJSON(rc.url(), "id-only"))
		eventually(t, "active", func() bool { return e.subStatus(la1, id) == "active" })
		for i := 0; i < 3; i++ {
			e.audited(nhsA)
		}
		eventually(t, "delivered", func() bool { return len(rc.numbers()) >= 3 })
		ss, ok := e.store.(store.Subscriptions)
		require.True(t, ok)
		eventually(t, "acknowledged", func() bool {
			sub, err := ss.GetSubscription(context.Background(), id)
			require.NoError(t, err)
			return sub.Acked == 3
		})
		rc.down.Store(true)
		e.audited(nhsA) // event 4: never acknowledged
		eventually(t, "event 4 numbered", func() bool {
			sub, err := ss.GetSubscription(context.Background(), id)
			require.NoError(t, err)
			return sub.Events == 4
		})

		pruned, err := ss.PruneSubEvents(context.Background(), time.Now().AddDate(10, 0, 0)) // everything is old
		require.NoError(t, err)
		assert.Equal(t, 3, pruned, "the three acknowledged events go, the unacknowledged one stays")

		tok := e.laSubToken(la1)
		r := e.do(http.MethodGet, "Subscription/"+id+"/$events?eventsSinceNumber=2", tok, "")
		require.Equal(t, http.StatusGone, r.Code, r.Body.String())
		assert.Contains(t, r.Body.String(), "no longer held", "the answer says the events are gone, not that there were none")
		assert.Contains(t, r.Body.String(), "the earliest held is 4")

		r = e.do(http.MethodGet, "Subscription/"+id+"/$events", tok, "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		assert.Equal(t, []int64{4}, parseNotice(t, r.Body.Bytes()).Numbers, "without eventsSinceNumber, from the first held")
		r = e.do(http.MethodGet, "Subscription/"+id+"/$events?eventsSinceNumber=4", tok, "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		assert.Equal(t, []int64{4}, parseNotice(t, r.Body.Bytes()).Numbers)

		rc.down.Store(false)
		e.audited(nhsA)
		eventually(t, "delivery goes on", func() bool {
			nums := rc.numbers()
			return len(nums) > 0 && nums[len(nums)-1] == 5
		})
		assert.Equal(t, seq(5), rc.numbers(), "numbering goes on after a prune, without gaps")
	})
}

// A subscription filtered by plan type (backport-filter-criteria
// EpisodeOfCare?type=) is told only of accesses to children on a plan of
// that type, numbered from 1 without gaps; one for the other type is told
// of the others. The filter is checked on create.
func TestSubscriptionFilterByPlanType(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		n := &notifier{}
		e := newEnv(t, b, withNotify(t, n, "p1", true, testNow()))
		e.putPlan(planSpec{id: "plan-cpp", nhs: nhsA, la: la1, planType: "CPP"})
		e.putPlan(planSpec{id: "plan-lac", nhs: nhsB, la: la1, planType: "LAC"})

		tok := e.laSubToken(la1)
		for _, bad := range []string{"EpisodeOfCare?type=XYZ", "Patient?type=CPP", "EpisodeOfCare?status=active", "EpisodeOfCare?type=http://other|CPP"} {
			r := e.do(http.MethodPost, "Subscription", tok, subFiltered("https://la.example/hook", "id-only", bad))
			assert.Equal(t, http.StatusUnprocessableEntity, r.Code, "%s: %s", bad, r.Body.String())
		}
		require.Equal(t, 0, e.do(http.MethodGet, "Subscription", tok, "").total(), "refused filters are not stored")

		cpp, lac := newReceiver(t), newReceiver(t)
		cppID := e.createSub(la1, subFiltered(cpp.url(), "id-only", "EpisodeOfCare?type=CPP"))
		lacID := e.createSub(la1, subFiltered(lac.url(), "id-only",
			"EpisodeOfCare?type="+url.QueryEscape("https://fhir.cpis.dev/CodeSystem/plan-type|LAC")))
		eventually(t, "active", func() bool { return e.subStatus(la1, cppID) == "active" && e.subStatus(la1, lacID) == "active" })
		r := e.do(http.MethodGet, "Subscription/"+cppID, tok, "")
		assert.Contains(t, r.Body.String(), "backport-filter-criteria", "the filter is served back")

		for _, nhs := range []string{nhsA, nhsB, nhsB, nhsA, nhsB} {
			e.audited(nhs)
		}
		eventually(t, "delivered", func() bool { return len(cpp.numbers()) >= 2 && len(lac.numbers()) >= 3 })
		time.Sleep(200 * time.Millisecond) // several polls: nothing more comes
		feed := e.feedIDs(la1)
		require.Len(t, feed, 5)
		focus := func(rc *receiver) []string {
			var out []string
			for _, n := range rc.notices("event-notification") {
				out = append(out, n.Focus...)
			}
			return out
		}
		assert.Equal(t, seq(2), cpp.numbers(), "the CPP subscription numbers only the CPP child's accesses, without gaps")
		assert.Equal(t, []string{"AuditEvent/" + feed[0], "AuditEvent/" + feed[3]}, focus(cpp))
		assert.Equal(t, seq(3), lac.numbers())
		assert.Equal(t, []string{"AuditEvent/" + feed[1], "AuditEvent/" + feed[2], "AuditEvent/" + feed[4]}, focus(lac))
		st := e.do(http.MethodGet, "Subscription/"+cppID+"/$status", tok, "")
		assert.Contains(t, st.Body.String(), `"name":"events-since-subscription-start","valueString":"2"`)
	})
}
