package handlers_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/profiles"
	"cpis/store"
)

// A child with a plan at each of two local authorities, with ids that name
// their authority so a leak is easy to see.
const (
	planLA1 = "plan-of-la001"
	planLA2 = "plan-of-la002"
)

// auditText is everything an AuditEvent says, its base64 query decoded.
func auditText(t *testing.T, ev map[string]any) string {
	t.Helper()
	b, err := json.Marshal(ev)
	require.NoError(t, err)
	text := string(b)
	for _, en := range jpath[[]any](t, ev, "entity") {
		if q, ok := jpath[map[string]any](t, en)["query"].(string); ok {
			dec, err := base64.StdEncoding.DecodeString(q)
			require.NoError(t, err)
			text += "\n" + string(dec)
		}
	}
	return text
}

func historyOf(nhs string) string {
	return "AuditEvent?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|" + nhs
}

// checkOwnPartOnly checks what one local authority is shown of a clinician's
// accesses to a child whose other plan is at another authority: one plan
// found, its own plan's id where one is named, the other's never.
func checkOwnPartOnly(t *testing.T, r resp, own, other string, want int) {
	t.Helper()
	require.Equal(t, http.StatusOK, r.Code, r.Body.String())
	events := r.entries("match")
	require.Len(t, events, want)
	assert.Equal(t, want, r.total())
	for _, ev := range events {
		text := auditText(t, ev)
		assert.Equal(t, "1 plan found", ev["outcomeDesc"], "only the LA's own plan is counted")
		assert.False(t, strings.Contains(text, other), "another LA's plan %s is named in %s's event %v", other, own, ev["id"])
	}
	assert.False(t, strings.Contains(r.Body.String(), other), "another LA's plan %s is named", other)
}

// Issue 11 item 7: a clinician's search of a child on plans at LA001 and
// LA002 was recorded as one AuditEvent, "2 plans found", naming both plans'
// ids where the search did, and each LA was served that event in its feed
// and in the child's access history: LA001 learned that another LA holds a
// plan for the child. Each LA must see only its own part.
func TestHazard_AuditEventTellsOneLAOfAnothersPlan(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: planLA1, nhs: nhsA, la: la1})
		e.putPlan(planSpec{id: planLA2, nhs: nhsA, la: la2})
		clinician := e.namedUser("u-clin", "Clinician", "B0107")
		r := e.do(http.MethodGet, flagSearch(nhsA)+"&_id="+planLA1+","+planLA2, clinician, "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		require.Equal(t, 2, r.total())

		for _, c := range []struct{ la, own, other string }{{la1, planLA1, planLA2}, {la2, planLA2, planLA1}} {
			t.Run(c.la, func(t *testing.T) {
				tok := e.laToken(c.la)
				feed := e.do(http.MethodGet, "AuditEvent?date=ge2026-01-01", tok, "")
				checkOwnPartOnly(t, feed, c.own, c.other, 1)
				assert.True(t, strings.Contains(auditText(t, feed.entries("match")[0]), c.own), "the LA's own plan id stays in the query")
				checkOwnPartOnly(t, e.do(http.MethodGet, historyOf(nhsA), tok, ""), c.own, c.other, 1)
				checkOwnPartOnly(t, e.doForm("AuditEvent/_search", tok, "patient:identifier="+nhsA), c.own, c.other, 1)
			})
		}
	})
}

// The same for a plain search by NHS number (the count alone told LA001
// that someone else holds a plan), and for the clinician's read of the
// access history, itself an access: each LA's feed and history count only
// its own plan; reads by id of the other LA's plan are not in its feed.
func TestHazard_AuditEventCountsAnotherLAsPlans(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: planLA1, nhs: nhsA, la: la1})
		e.putPlan(planSpec{id: planLA2, nhs: nhsA, la: la2})
		clinician := e.namedUser("u-clin", "Clinician", "B0107")
		require.Equal(t, http.StatusOK, e.do(http.MethodGet, flagSearch(nhsA), clinician, "").Code)
		require.Equal(t, http.StatusOK, e.do(http.MethodGet, "EpisodeOfCare?patient:identifier="+nhsA+"&_count=1", clinician, "").Code)
		require.Equal(t, http.StatusOK, e.do(http.MethodGet, historyOf(nhsA), e.namedUser("u-other", "Other", "B0107"), "").Code)
		require.Equal(t, http.StatusOK, e.do(http.MethodGet, "Flag/"+planLA1, clinician, "").Code)
		require.Equal(t, http.StatusOK, e.do(http.MethodGet, "Flag/"+planLA2, clinician, "").Code)

		for _, c := range []struct{ la, own, other string }{{la1, planLA1, planLA2}, {la2, planLA2, planLA1}} {
			t.Run(c.la, func(t *testing.T) {
				tok := e.laToken(c.la)
				// Two searches, the history read and the read of its own plan.
				checkOwnPartOnly(t, e.do(http.MethodGet, "AuditEvent?date=ge2026-01-01", tok, ""), c.own, c.other, 4)
				// Repeats within 24 h count once: the clinician's first search,
				// and the other user's read of the history.
				checkOwnPartOnly(t, e.do(http.MethodGet, historyOf(nhsA), tok, ""), c.own, c.other, 2)
			})
		}
	})
}

// A health user's access history still shows each access once, whole: the
// clinician's one search, with both plans counted, not one event per LA.
func TestAccessHistoryShowsOneAccessAcrossLAs(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: planLA1, nhs: nhsA, la: la1})
		e.putPlan(planSpec{id: planLA2, nhs: nhsA, la: la2})
		clinician := e.namedUser("u-clin", "Clinician", "B0107")
		require.Equal(t, http.StatusOK, e.do(http.MethodGet, flagSearch(nhsA)+"&_id="+planLA1+","+planLA2, clinician, "").Code)

		r := e.do(http.MethodGet, historyOf(nhsA), e.namedUser("u-reader", "Reader", "B0107"), "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		events := r.entries("match")
		require.Len(t, events, 1, "one access, one event")
		assert.Equal(t, 1, r.total())
		assert.Equal(t, "2 plans found", events[0]["outcomeDesc"])
		text := auditText(t, events[0])
		assert.True(t, strings.Contains(text, planLA1) && strings.Contains(text, planLA2), "the whole query")
		recs := e.auditOf(nhsA)
		require.Len(t, recs, 2, "the search and the history read: one record each")
		assert.Equal(t, []string{la1, la2}, recs[0].Owners)
		// Both LAs are told of the one access, under the same id.
		for _, la := range []string{la1, la2} {
			feed := e.do(http.MethodGet, "AuditEvent?date=ge2026-01-01&_count=1", e.laToken(la), "")
			require.Len(t, feed.entries("match"), 1)
			assert.Equal(t, recs[0].ID, feed.entries("match")[0]["id"])
		}
	})
}

// An access record stored before local authorities had their own views
// (several owners, no views) is served to an LA without the count and
// without the ids in its query, never whole.
func TestHazard_AccessRecordWithoutViewsTellsOneLAOfAnothersPlan(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: planLA1, nhs: nhsA, la: la1})
		e.putPlan(planSpec{id: planLA2, nhs: nhsA, la: la2})
		at := e.clock.Now()
		body := profiles.AuditEvent(profiles.Access{ID: "old-1", Recorded: at, Interaction: "search-type",
			Query:     "Flag?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|" + nhsA + "&_id=" + planLA1 + "," + planLA2 + "&_count=50",
			NHSNumber: nhsA, Results: 2, UserName: "Clinician", UserID: "u-clin", RoleName: "Nurse", OrgCode: "RBA", OrgName: "Trust"})
		require.NoError(t, e.store.Audit(context.Background(), []store.AuditRecord{{ID: "old-1", Recorded: at, Subject: nhsA,
			Owners: []string{la1, la2}, Agent: "user:u-clin", Notify: true, Body: body}}))

		for _, c := range []struct{ la, other string }{{la1, planLA2}, {la2, planLA1}} {
			t.Run(c.la, func(t *testing.T) {
				tok := e.laToken(c.la)
				for _, r := range []resp{e.do(http.MethodGet, "AuditEvent?date=ge2026-01-01", tok, ""), e.do(http.MethodGet, historyOf(nhsA), tok, "")} {
					require.Equal(t, http.StatusOK, r.Code, r.Body.String())
					events := r.entries("match")
					require.Len(t, events, 1)
					text := auditText(t, events[0])
					assert.False(t, strings.Contains(text, c.other), "another LA's plan %s is named", c.other)
					assert.False(t, strings.Contains(text, "2 plans"), "another LA's plan is counted")
					assert.True(t, strings.Contains(text, "patient:identifier="), "the rest of the query is kept")
				}
			})
		}
		// Health users still see it whole.
		r := e.do(http.MethodGet, historyOf(nhsA), e.nurse(), "")
		require.Len(t, r.entries("match"), 1)
		assert.Equal(t, "2 plans found", r.entries("match")[0]["outcomeDesc"])
	})
}

// A search may name, in _id, a plan that does not match (another LA's plan
// for another child): the access touched only LA001's plan, but the query
// as made named LA002's. LA001's view names only its own.
func TestHazard_AuditQueryNamesAnotherLAsPlan(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: planLA1, nhs: nhsA, la: la1})
		e.putPlan(planSpec{id: planLA2, nhs: nhsB, la: la2})
		r := e.do(http.MethodGet, flagSearch(nhsA)+"&_id="+planLA2+","+planLA1, e.nurse(), "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		require.Equal(t, 1, r.total())
		feed := e.do(http.MethodGet, "AuditEvent?date=ge2026-01-01", e.laToken(la1), "")
		checkOwnPartOnly(t, feed, planLA1, planLA2, 1)
		assert.True(t, strings.Contains(auditText(t, feed.entries("match")[0]), "&_id="+planLA1+"&"), "the LA's own plan id stays in the query")
		assert.Empty(t, e.do(http.MethodGet, "AuditEvent?date=ge2026-01-01", e.laToken(la2), "").entries("match"), "LA002's child was not touched")
	})
}
