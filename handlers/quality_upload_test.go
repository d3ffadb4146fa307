package handlers_test

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/handlers"
	"cpis/profiles/quality"
)

// uploadWarnings are an OperationOutcome's data-quality warnings as
// "severity rule" (the rule code leads the diagnostics), sorted.
func uploadWarnings(t testing.TB, oo any) []string {
	t.Helper()
	out := []string{}
	for _, is := range jpath[[]any](t, oo, "issue") {
		m := jpath[map[string]any](t, is)
		d, _ := m["diagnostics"].(string)
		rule, _, ok := strings.Cut(d, ": ")
		if !ok {
			continue
		}
		for _, r := range quality.Rules {
			if rule == string(r) {
				out = append(out, m["severity"].(string)+" "+rule)
			}
		}
	}
	sort.Strings(out)
	return out
}

// preferOO asks a write for an OperationOutcome.
var preferOO = []string{"Prefer", "return=OperationOutcome"}

// TestHazard_UploadOfOverdueUCPPWarnsAtItsThreshold: an unborn child's plan
// still on the mother more than 10 months after it started comes back with
// a warning on the write that stores it, judged by the server's clock: not
// at 10 months exactly, one second later yes. The write is made either way.
func TestHazard_UploadOfOverdueUCPPWarnsAtItsThreshold(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		london, err := time.LoadLocation("Europe/London")
		require.NoError(t, err)
		start := time.Date(2025, 8, 15, 0, 0, 0, 0, london) // the period.start below
		e.clock.t = start.AddDate(0, 10, 0).UTC()
		p := planSpec{id: "ucpp-1", nhs: nhsB, la: la1, planType: "UCPP", start: "2025-08-15"}
		r := e.do(http.MethodPut, "EpisodeOfCare/ucpp-1", e.laToken(la1), planJSON(p), preferOO...)
		require.Equal(t, http.StatusCreated, r.Code, r.Body.String())
		assert.Equal(t, []string{}, uploadWarnings(t, r.json()), "exactly 10 months: no warning")

		e.clock.Add(time.Second)
		r = e.do(http.MethodPut, "EpisodeOfCare/ucpp-1", e.laToken(la1), planJSON(p), preferOO...)
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		assert.Equal(t, []string{"warning ucpp-overdue"}, uploadWarnings(t, r.json()))
		issues := jpath[[]any](t, r.json(), "issue")
		require.Len(t, issues, 2)
		assert.Equal(t, "information", jpath[string](t, issues[0], "severity"), "what was done comes first")
		assert.Equal(t, "EpisodeOfCare.period.start", jpath[string](t, issues[1], "expression", 0))
		assert.NotContains(t, r.Body.String(), nhsB, "a warning names the plan, never the NHS number")

		// The default answer is still the resource: the plan was stored.
		r = e.do(http.MethodGet, "EpisodeOfCare/ucpp-1", e.laToken(la1), "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		r = e.do(http.MethodGet, flagSearch(nhsB), e.nurse(), "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		assert.Equal(t, 1, r.total(), "the warned plan's Flag is served")
	})
}

// TestUploadWarningsForImpossibleDates: a start in the future, or an end
// more than 5 years ahead, warn; at the thresholds they do not. Dates are
// read in Europe/London: a start of 2026-06-16 is 2026-06-15T23:00Z, and an
// end of 2031-06-15 means up to 2031-06-15T23:00Z.
func TestUploadWarningsForImpossibleDates(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.clock.t = time.Date(2026, 6, 15, 23, 0, 0, 0, time.UTC)
		p := planSpec{id: "p1", nhs: nhsA, la: la1, start: "2026-06-16", end: "2031-06-15"}
		r := e.do(http.MethodPut, "EpisodeOfCare/p1", e.laToken(la1), planJSON(p), preferOO...)
		require.Equal(t, http.StatusCreated, r.Code, r.Body.String())
		assert.Equal(t, []string{}, uploadWarnings(t, r.json()), "start now, end exactly 5 years ahead")

		e.clock.Add(-time.Second)
		r = e.do(http.MethodPut, "EpisodeOfCare/p1", e.laToken(la1), planJSON(p), preferOO...)
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		assert.Equal(t, []string{"warning end-far-future", "warning start-in-future"}, uploadWarnings(t, r.json()))

		// Thresholds are configurable: a server that allows UCPPs 3 months.
		th := quality.DefaultThresholds()
		th.UCPPMonths = 3
		e2 := newEnv(t, b, func(d *handlers.Deps) { d.Quality = th })
		e2.clock.t = time.Date(2026, 6, 15, 10, 0, 0, 0, time.UTC)
		p = planSpec{id: "u", nhs: nhsA, la: la1, planType: "UCPP", start: "2026-03-01"}
		r = e2.do(http.MethodPut, "EpisodeOfCare/u", e2.laToken(la1), planJSON(p), preferOO...)
		require.Equal(t, http.StatusCreated, r.Code, r.Body.String())
		assert.Equal(t, []string{"warning ucpp-overdue"}, uploadWarnings(t, r.json()))
	})
}

// TestHazard_DuplicateWarningNeverTellsOfAnotherLAsPlan: the duplicate
// check on upload looks only at the writing authority's own plans. Another
// LA's live plan for the same child is no duplicate and is never named; a
// second plan of the LA's own is, and names the first.
func TestHazard_DuplicateWarningNeverTellsOfAnotherLAsPlan(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: "la2-plan", nhs: nhsA, la: la2, start: "2026-02-01"})
		r := e.do(http.MethodPut, "EpisodeOfCare/la1-a", e.laToken(la1), planJSON(planSpec{id: "la1-a", nhs: nhsA, la: la1, start: "2026-03-01"}), preferOO...)
		require.Equal(t, http.StatusCreated, r.Code, r.Body.String())
		assert.Equal(t, []string{}, uploadWarnings(t, r.json()), "another LA's plan is no duplicate")
		assert.NotContains(t, r.Body.String(), "la2-plan")

		r = e.do(http.MethodPut, "EpisodeOfCare/la1-b", e.laToken(la1), planJSON(planSpec{id: "la1-b", nhs: nhsA, la: la1, start: "2026-04-01"}), preferOO...)
		require.Equal(t, http.StatusCreated, r.Code, r.Body.String(), "a duplicate is warned of, not refused")
		assert.Equal(t, []string{"warning duplicate-plan"}, uploadWarnings(t, r.json()))
		assert.Contains(t, r.Body.String(), "EpisodeOfCare/la1-a")
		assert.NotContains(t, r.Body.String(), "la2-plan")
		assert.NotContains(t, r.Body.String(), nhsA)

		// Another type for the same child is no duplicate.
		r = e.do(http.MethodPut, "EpisodeOfCare/la1-lac", e.laToken(la1), planJSON(planSpec{id: "la1-lac", nhs: nhsA, la: la1, planType: "LAC", start: "2026-04-01"}), preferOO...)
		require.Equal(t, http.StatusCreated, r.Code, r.Body.String())
		assert.Equal(t, []string{}, uploadWarnings(t, r.json()))
	})
}

// TestUploadWarningsInBundleEntries: each batch and transaction entry's
// response.outcome carries its plan's warnings, whatever Prefer asks, and
// the entries are applied.
func TestUploadWarningsInBundleEntries(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.clock.t = time.Date(2026, 6, 15, 10, 0, 0, 0, time.UTC)
		e.putPlan(planSpec{id: "la2-u", nhs: nhsB, la: la2, planType: "UCPP", start: "2025-01-01"})
		body := bundleJSON("batch",
			putPlanEntry(planSpec{id: "b-ucpp", nhs: nhsB, la: la1, planType: "UCPP", start: "2025-01-01"}),
			putPlanEntry(planSpec{id: "b-ok", nhs: nhsA, la: la1, start: "2026-01-01"}),
			putPlanEntry(planSpec{id: "b-start", nhs: nhsC, la: la1, start: "2026-07-01"}),
		)
		for _, pref := range []string{"", "return=minimal", "return=OperationOutcome"} {
			var headers []string
			if pref != "" {
				headers = []string{"Prefer", pref}
			}
			r := e.post(e.laToken(la1), body, headers...)
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			rs := r.responses()
			require.Len(t, rs, 3)
			for _, x := range rs {
				assert.Contains(t, []string{"200 OK", "201 Created"}, x["status"], pref)
			}
			assert.Equal(t, []string{"warning ucpp-overdue"}, uploadWarnings(t, jget(t, rs[0], "outcome")), pref)
			if oo, ok := rs[1]["outcome"]; ok {
				assert.Equal(t, []string{}, uploadWarnings(t, oo), pref)
			}
			assert.Equal(t, []string{"warning start-in-future"}, uploadWarnings(t, jget(t, rs[2], "outcome")), pref)
			assert.NotContains(t, r.Body.String(), "la2-u", pref)
		}

		t.Run("transaction", func(t *testing.T) {
			e.requireTransactions(t)
			r := e.post(e.laToken(la1), bundleJSON("transaction",
				putPlanEntry(planSpec{id: "t-a", nhs: nhsC, la: la1, planType: "LAC", start: "2026-01-01"}),
				putPlanEntry(planSpec{id: "t-b", nhs: nhsC, la: la1, planType: "LAC", start: "2026-02-01"}),
			))
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			rs := r.responses()
			require.Len(t, rs, 2)
			assert.Equal(t, []string{"warning duplicate-plan"}, uploadWarnings(t, jget(t, rs[0], "outcome")))
			assert.Equal(t, []string{"warning duplicate-plan"}, uploadWarnings(t, jget(t, rs[1], "outcome")))
			assert.Contains(t, r.Body.String(), "EpisodeOfCare/t-b")
		})
	})
}

// TestDuplicateWarningsOfALargeTransaction: a transaction's plans are
// checked for duplicates with one read for many children; a child with
// more plans than that read's share (here 300 for one child) does not hide
// the duplicates of the children after it, and another LA's plan is still
// never a duplicate.
func TestDuplicateWarningsOfALargeTransaction(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.requireTransactions(t)
		e.putPlan(planSpec{id: "la2-b", nhs: nhsB, la: la2, start: "2026-02-01"})
		var entries []entry
		for i := 0; i < 300; i++ {
			entries = append(entries, entry{method: "POST", url: "EpisodeOfCare",
				resource: planJSON(planSpec{nhs: nhsA, la: la1, ident: fmt.Sprintf("A%d", i), start: "2026-01-01"})})
		}
		entries = append(entries,
			entry{method: "POST", url: "EpisodeOfCare", resource: planJSON(planSpec{nhs: nhsC, la: la1, ident: "C", start: "2026-01-01"})},
			entry{method: "POST", url: "EpisodeOfCare", resource: planJSON(planSpec{nhs: nhsB, la: la1, ident: "B1", start: "2026-01-01"})},
			entry{method: "POST", url: "EpisodeOfCare", resource: planJSON(planSpec{nhs: nhsB, la: la1, ident: "B2", start: "2026-03-01"})},
		)
		r := e.post(e.laToken(la1), bundleJSON("transaction", entries...), "Prefer", "return=minimal")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		rs := r.responses()
		require.Len(t, rs, 303)
		for i, x := range rs {
			want := []string{"warning duplicate-plan"}
			if i == 300 {
				want = []string{} // the only plan of nhsC
			}
			oo, ok := x["outcome"]
			if !ok {
				assert.Equal(t, want, []string{}, "entry %d has no outcome", i)
				continue
			}
			assert.Equal(t, want, uploadWarnings(t, oo), "entry %d", i)
		}
		assert.NotContains(t, r.Body.String(), "la2-b")
	})
}
