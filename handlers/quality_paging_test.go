package handlers_test

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/handlers"
)

// dqDirty writes LA1's plans for the paging tests (the clock is 2026-06-15):
// five plans starting in the future (start-in-future), three ending over
// five years ahead (end-far-future) and three children with two CPPs each
// (duplicate-plan, one finding per child). It returns the expressions of
// the findings each rule must list.
func dqDirty(e *env) map[string][]string {
	want := map[string][]string{}
	for i := 0; i < 5; i++ {
		id := fmt.Sprintf("future-%d", i)
		e.putPlan(planSpec{id: id, nhs: testNHS(100 + 10*i), la: la1, start: "2026-09-01"})
		want["start-in-future"] = append(want["start-in-future"], "start-in-future@EpisodeOfCare.where(id='"+id+"').period.start")
	}
	for i := 0; i < 3; i++ {
		id := fmt.Sprintf("far-%d", i)
		e.putPlan(planSpec{id: id, nhs: testNHS(200 + 10*i), la: la1, start: "2026-01-01", end: "2032-01-01"})
		want["end-far-future"] = append(want["end-far-future"], "end-far-future@EpisodeOfCare.where(id='"+id+"').period.end")
	}
	for i, nhs := range []string{nhsA, nhsB, nhsC} {
		e.putPlan(planSpec{id: fmt.Sprintf("dup-%d-a", i), nhs: nhs, la: la1})
		e.putPlan(planSpec{id: fmt.Sprintf("dup-%d-b", i), nhs: nhs, la: la1})
		want["duplicate-plan"] = append(want["duplicate-plan"], fmt.Sprintf("duplicate-plan@EpisodeOfCare.where(id='dup-%d-a').patient.identifier", i))
	}
	// Another authority's plans for the same children, and its own future
	// plan: never in LA1's report or pages.
	e.putPlan(planSpec{id: "la2-future", nhs: nhsA, la: la2, start: "2026-09-01"})
	for _, w := range want {
		sort.Strings(w)
	}
	return want
}

func maxPerRule(n int) envOption { return func(d *handlers.Deps) { d.QualityMaxPerRule = n } }

// TestDataQualityReportListsAtMostNPerRule: with the limit at 2 the report
// lists each rule's first two findings by resource id, counts every
// finding exactly, and says per truncated rule how many are not listed and
// how to list them.
func TestDataQualityReportListsAtMostNPerRule(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, maxPerRule(2))
		want := dqDirty(e)
		r := e.do(http.MethodGet, "$data-quality", e.laToken(la1, dqScopes...), "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		got := map[string][]string{}
		for _, s := range findingIssues(r) {
			code, _, _ := strings.Cut(s, "@")
			got[code] = append(got[code], s)
		}
		for rule, w := range want {
			assert.Equal(t, w[:2], got[rule], "%s: its first two findings, in id order", rule)
		}
		var diags []string
		for _, is := range jpath[[]any](t, r.json(), "issue") {
			if d, ok := jpath[map[string]any](t, is)["diagnostics"].(string); ok {
				diags = append(diags, d)
			}
		}
		assert.Contains(t, diags, "start-in-future: 5 findings")
		assert.Contains(t, diags, "end-far-future: 3 findings")
		assert.Contains(t, diags, "duplicate-plan: 3 findings")
		assert.Contains(t, diags, "start-in-future: 3 of its 5 findings are not listed here (only the first 2 by resource id are); "+
			"GET "+base+"/$data-quality?rule=start-in-future lists them all: a searchset Bundle of pages (_count up to 1000), each Bundle's next link giving the page after it")
		assert.Contains(t, diags, "end-far-future: 1 of its 3 findings is not listed here (only the first 2 by resource id are); "+
			"GET "+base+"/$data-quality?rule=end-far-future lists them all: a searchset Bundle of pages (_count up to 1000), each Bundle's next link giving the page after it")
		assert.NotContains(t, r.Body.String(), "la2-future")
	})
}

// TestDataQualityRulePagesListEveryFindingOnce: ?rule=&_count=2 answers a
// searchset Bundle whose total is the rule's count; following its next
// links lists every finding of the rule exactly once, in order, and
// nothing of another authority's.
func TestDataQualityRulePagesListEveryFindingOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, maxPerRule(2))
		want := dqDirty(e)
		tok := e.laToken(la1, dqScopes...)
		for rule, w := range want {
			var got []string
			next := "$data-quality?rule=" + rule + "&_count=2"
			for pages := 0; next != ""; pages++ {
				require.Less(t, pages, 10, "%s: the pages do not end", rule)
				r := e.do(http.MethodGet, next, tok, "")
				require.Equal(t, http.StatusOK, r.Code, r.Body.String())
				assert.Equal(t, len(w), r.total(), "%s: total is the rule's count on every page", rule)
				entries := r.entries("match")
				assert.LessOrEqual(t, len(entries), 2)
				for _, oo := range entries {
					require.Equal(t, "OperationOutcome", oo["resourceType"])
					is := jpath[[]any](t, oo, "issue")
					require.Len(t, is, 1)
					code := jpath[string](t, is[0], "details", "coding", 0, "code")
					expr := jpath[string](t, is[0], "expression", 0)
					got = append(got, code+"@"+expr)
				}
				next = r.link("next")
				if next != "" {
					u, err := url.Parse(next)
					require.NoError(t, err)
					assert.Equal(t, []string{"_cursor"}, queryNames(u.Query()), "a next link is opaque: %s", next)
					assert.NotContains(t, next, "dup-", "a next link names no plan")
				}
			}
			assert.Equal(t, w, got, "%s: every finding exactly once, in id order", rule)
		}
		// A rule without findings: total 0, no entries, no next link.
		r := e.do(http.MethodGet, "$data-quality?rule=ucpp-overdue", tok, "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		assert.Equal(t, 0, r.total())
		assert.Empty(t, r.entries(""))
		assert.Empty(t, r.link("next"))
	})
}

func queryNames(v url.Values) []string {
	var out []string
	for k := range v {
		out = append(out, k)
	}
	return out
}

// TestDataQualityBadParameters400: an unknown rule, a bad _count, _count
// without a rule, an unknown parameter or an altered page link is a 400
// OperationOutcome naming the parameter.
func TestDataQualityBadParameters400(t *testing.T) {
	e := newEnv(t, backends()[0], maxPerRule(2))
	dqDirty(e)
	tok := e.laToken(la1, dqScopes...)
	for _, q := range []string{"rule=no-such-rule", "rule=", "rule=start-in-future&_count=0", "rule=start-in-future&_count=x",
		"_count=5", "patient=9449306753", "rule=start-in-future&rule=end-far-future", "_cursor=AAAA"} {
		r := e.do(http.MethodGet, "$data-quality?"+q, tok, "")
		assert.Equal(t, http.StatusBadRequest, r.Code, "%s: %s", q, r.Body.String())
		assert.Equal(t, "OperationOutcome", r.json()["resourceType"], q)
		assert.NotContains(t, r.Body.String(), "future-", q)
	}
	// A page link followed with something added to it.
	r := e.do(http.MethodGet, "$data-quality?rule=start-in-future&_count=2", tok, "")
	require.Equal(t, http.StatusOK, r.Code, r.Body.String())
	next := r.link("next")
	require.NotEmpty(t, next)
	r = e.do(http.MethodGet, next+"&rule=end-far-future", tok, "")
	assert.Equal(t, http.StatusBadRequest, r.Code, r.Body.String())
}

// TestHazard_DataQualityPageLinkFollowedByAnotherCaller: a page link is
// sealed to the system it was issued to; another authority (or a
// clinician) following it is refused and sees none of the first
// authority's findings.
func TestHazard_DataQualityPageLinkFollowedByAnotherCaller(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, maxPerRule(2))
		dqDirty(e)
		r := e.do(http.MethodGet, "$data-quality?rule=start-in-future&_count=2", e.laToken(la1, dqScopes...), "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		next := r.link("next")
		require.NotEmpty(t, next)
		r = e.do(http.MethodGet, next, e.laToken(la2, dqScopes...), "")
		assert.Equal(t, http.StatusBadRequest, r.Code, r.Body.String())
		assert.NotContains(t, r.Body.String(), "future-")
		for name, tok := range map[string]string{"nurse": e.nurse(), "gp": e.gp(), "LA no scope": e.laToken(la1)} {
			for _, path := range []string{next, "$data-quality?rule=start-in-future"} {
				r = e.do(http.MethodGet, path, tok, "")
				assert.Equal(t, http.StatusForbidden, r.Code, "%s: %s", name, r.Body.String())
				assert.NotContains(t, r.Body.String(), "future-", name)
			}
		}
	})
}
