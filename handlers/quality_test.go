package handlers_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// dqScopes is an LA token allowed to write and to ask for its report.
var dqScopes = []string{"system/EpisodeOfCare.*", "system/Organization.*", "system/DataQuality.read"}

// findingIssues are the issues of a data-quality report that name a
// resource: rule@expression.
func findingIssues(r resp) []string {
	var out []string
	for _, s := range r.issues() {
		if code, expr, _ := strings.Cut(s, "@"); code != "" && expr != "" {
			out = append(out, s)
		}
	}
	return out
}

// TestDataQualityReport: an LA's report shows its overdue UCPP and its
// duplicate plans, by reference, and nothing of another LA's plans for the
// same child.
func TestDataQualityReport(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putOrg("org-la1", la1, "Local Authority One")
		e.putOrg("org-la2", la2, "Local Authority Two")
		// Written a year before "now", so the UCPP is over 10 months old.
		e.clock.Add(-365 * 24 * time.Hour)
		e.putPlan(planSpec{id: "ucpp-old", nhs: nhsB, la: la1, planType: "UCPP", start: "2025-07-01"})
		e.putPlan(planSpec{id: "ucpp-other", nhs: nhsB, la: la2, planType: "UCPP", start: "2025-07-01"})
		e.clock.Add(365 * 24 * time.Hour)
		e.putOrg("org-la1", la1, "Local Authority One")
		e.putOrg("org-la2", la2, "Local Authority Two")
		e.putPlan(planSpec{id: "dup-a", nhs: nhsA, la: la1, start: "2026-03-01"})
		e.putPlan(planSpec{id: "dup-b", nhs: nhsA, la: la1, start: "2026-04-01"})
		// Another LA's plan for the same child: not a duplicate of LA1's.
		e.putPlan(planSpec{id: "other-la", nhs: nhsA, la: la2, start: "2026-02-01"})

		r := e.do(http.MethodGet, "$data-quality", e.laToken(la1, dqScopes...), "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		got := findingIssues(r)
		assert.Contains(t, got, "ucpp-overdue@EpisodeOfCare.where(id='ucpp-old').period.start")
		var dups []string
		for _, s := range got {
			if strings.HasPrefix(s, "duplicate-plan@") {
				dups = append(dups, s)
			}
		}
		require.Len(t, dups, 1, "one finding per duplicate group: %v", got)
		assert.Contains(t, dups[0], "where(id='dup-a')")
		body := r.Body.String()
		assert.Contains(t, body, "EpisodeOfCare/dup-b")
		for _, other := range []string{"other-la", "ucpp-other", "org-la2"} {
			assert.NotContains(t, body, other, "another LA's record in the report")
		}
		for _, nhs := range []string{nhsA, nhsB} {
			assert.NotContains(t, body, nhs, "an NHS number in the report")
		}

		// LA2 sees its own UCPP, and no duplicate (its one plan for nhsA).
		r2 := e.do(http.MethodGet, "$data-quality", e.laToken(la2, "system/*.read"), "")
		require.Equal(t, http.StatusOK, r2.Code, r2.Body.String())
		got2 := findingIssues(r2)
		assert.Contains(t, got2, "ucpp-overdue@EpisodeOfCare.where(id='ucpp-other').period.start")
		for _, s := range got2 {
			assert.NotContains(t, s, "duplicate-plan", "LA1's plans counted in LA2's report")
		}
		assert.NotContains(t, r2.Body.String(), "ucpp-old")
		assert.NotContains(t, r2.Body.String(), "dup-a")

	})
}

// TestHazard_DataQualityReportForHealthUsersOrUnscopedLA: the report lists
// a local authority's plans; health users and LA tokens without
// system/DataQuality.read are refused.
func TestHazard_DataQualityReportForHealthUsersOrUnscopedLA(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: "p1", nhs: nhsA, la: la1})
		for name, tok := range map[string]string{
			"nurse":       e.nurse(),
			"gp":          e.gp(),
			"LA no scope": e.laToken(la1),
		} {
			r := e.do(http.MethodGet, "$data-quality", tok, "")
			assert.Equal(t, http.StatusForbidden, r.Code, "%s: %s", name, r.Body.String())
			assert.Equal(t, "ACCESS_DENIED", r.code(), name)
			assert.NotContains(t, r.Body.String(), "p1", name)
		}
		r := e.do(http.MethodGet, "$data-quality", e.laToken(la2, dqScopes...), "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		assert.Empty(t, findingIssues(r), "an LA with no data has no findings")
	})
}

// TestCapabilityStatementListsDataQuality: the operation is listed at
// system level, where clients look for it.
func TestCapabilityStatementListsDataQuality(t *testing.T) {
	e := newEnv(t, backends()[0])
	r := e.do(http.MethodGet, "metadata", "", "")
	require.Equal(t, http.StatusOK, r.Code, r.Body.String())
	ops := jpath[[]any](t, r.json(), "rest", 0, "operation")
	require.NotEmpty(t, ops)
	assert.Equal(t, "data-quality", jpath[string](t, ops[0], "name"))
	assert.Equal(t, "https://fhir.cpis.dev/OperationDefinition/data-quality", jpath[string](t, ops[0], "definition"))
}

// TestHazard_DataQualityReportEmptyOnStoreFailure: a report the database
// could not produce is a 503, never "All OK".
func TestHazard_DataQualityReportEmptyOnStoreFailure(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: "p1", nhs: nhsA, la: la1})
		require.NoError(t, e.store.Close())
		r := e.do(http.MethodGet, "$data-quality", e.laToken(la1, dqScopes...), "")
		assert.Equal(t, http.StatusServiceUnavailable, r.Code, r.Body.String())
		assert.NotContains(t, r.Body.String(), "All OK")
	})
}
