package handlers_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHazard_ZeroNHSNumberAccepted: 0000000000 passes the Modulus 11 sum
// but is no one's NHS number. A plan for it is refused as any bad NHS
// number is (422 VALIDATION_ERROR) and a search for it too (400
// INVALID_SEARCH_DATA), on every backend.
func TestHazard_ZeroNHSNumberAccepted(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		la := e.laToken(la1)
		r := e.do(http.MethodPut, "EpisodeOfCare/p0", la, planJSON(planSpec{id: "p0", nhs: "0000000000", la: la1}))
		require.Equal(t, http.StatusUnprocessableEntity, r.Code, r.Body.String())
		assert.Contains(t, r.issues(), "VALIDATION_ERROR@EpisodeOfCare.patient.identifier.value")
		bad := e.do(http.MethodPut, "EpisodeOfCare/p0", la, planJSON(planSpec{id: "p0", nhs: "1234567890", la: la1}))
		assert.Equal(t, bad.issues(), r.issues(), "the same answer as a bad check digit")

		for _, path := range []string{flagSearch("0000000000"), "EpisodeOfCare?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|0000000000"} {
			r = e.do(http.MethodGet, path, e.nurse(), "")
			require.Equal(t, http.StatusBadRequest, r.Code, r.Body.String())
			assert.Equal(t, "INVALID_SEARCH_DATA", r.code())
			bad = e.do(http.MethodGet, strings.Replace(path, "0000000000", "1234567890", 1), e.nurse(), "")
			assert.Equal(t, bad.Code, r.Code)
			assert.Equal(t, bad.code(), r.code())
		}
		r = e.do(http.MethodGet, "EpisodeOfCare/p0", la, "")
		assert.Equal(t, http.StatusNotFound, r.Code)
	})
}

// TestHazard_YearZeroPlanDates: a plan that starts or ends in year 0000
// (which FHIR's date grammar excludes and google/fhir accepts) is refused
// at the element, and nothing is stored.
func TestHazard_YearZeroPlanDates(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		la := e.laToken(la1)
		for _, tc := range []struct{ start, end, expr string }{
			{"0000-01-01", "", "EpisodeOfCare.period.start"},
			{"0000", "", "EpisodeOfCare.period.start"},
			{"2026-01-10", "0000-12-31", "EpisodeOfCare.period.end"},
		} {
			r := e.do(http.MethodPut, "EpisodeOfCare/p0", la, planJSON(planSpec{id: "p0", nhs: nhsA, la: la1, start: tc.start, end: tc.end}))
			require.Equal(t, http.StatusBadRequest, r.Code, r.Body.String())
			assert.Contains(t, r.issues(), "INVALID_VALUE@"+tc.expr)
		}
		r := e.do(http.MethodGet, flagSearch(nhsA), e.nurse(), "")
		require.Equal(t, http.StatusOK, r.Code)
		assert.Equal(t, 0, r.total())
		r = e.do(http.MethodGet, "AuditEvent?date=ge0000-01-01", la, "")
		assert.Equal(t, http.StatusBadRequest, r.Code, "a search date in year 0000: %s", r.Body.String())
		r = e.do(http.MethodGet, "AuditEvent?date=ge0001-01-01", la, "")
		assert.Equal(t, http.StatusOK, r.Code, "year 0001 is a date: %s", r.Body.String())
	})
}
