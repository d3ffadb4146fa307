package handlers_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHazard_DeletedPlanCorrectionListed: DELETE is how an LA withdraws a
// plan recorded in error. A plan deleted for one NHS number and uploaded
// again, with the same identifier, for another is an NHS-number correction
// the LA must confirm: its report lists it for 90 days (not on day 91),
// and another LA's report never does.
func TestHazard_DeletedPlanCorrectionListed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		tok := e.laToken(la1, dqScopes...)
		e.putPlan(planSpec{id: "wrong", nhs: nhsA, la: la1, ident: "CP-1", start: "2026-05-01"})
		deletedAt := e.clock.Now()
		r := e.do(http.MethodDelete, "EpisodeOfCare/wrong", tok, "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		e.putPlan(planSpec{id: "right", nhs: nhsB, la: la1, ident: "CP-1", start: "2026-05-01"})
		// LA2 deletes a plan of its own with the same identifier value.
		e.putPlan(planSpec{id: "la2-wrong", nhs: nhsC, la: la2, ident: "CP-1", start: "2026-05-01"})
		require.Equal(t, http.StatusOK, e.do(http.MethodDelete, "EpisodeOfCare/la2-wrong", e.laToken(la2, dqScopes...), "").Code)

		want := "nhs-number-corrected@EpisodeOfCare.where(id='right').patient.identifier"
		e.clock.t = deletedAt.AddDate(0, 0, 90)
		r = e.do(http.MethodGet, "$data-quality", tok, "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		assert.Contains(t, findingIssues(r), want)
		assert.Contains(t, r.Body.String(), "EpisodeOfCare/wrong", "the deleted plan is named")
		assert.NotContains(t, r.Body.String(), "la2-wrong")
		assert.NotContains(t, r.Body.String(), nhsA)
		assert.NotContains(t, r.Body.String(), nhsB)

		r2 := e.do(http.MethodGet, "$data-quality", e.laToken(la2, dqScopes...), "")
		require.Equal(t, http.StatusOK, r2.Code, r2.Body.String())
		assert.Empty(t, findingIssues(r2), "LA2 deleted a plan and uploaded none: nothing corrected")
		assert.NotContains(t, r2.Body.String(), "wrong\\u0027")
		assert.NotContains(t, r2.Body.String(), "EpisodeOfCare/wrong")
		assert.NotContains(t, r2.Body.String(), "right")

		e.clock.Add(24*time.Hour + time.Second)
		r = e.do(http.MethodGet, "$data-quality", tok, "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		assert.NotContains(t, findingIssues(r), want, "after 90 days the correction is taken as confirmed")
	})
}
