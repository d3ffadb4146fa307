package handlers_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/fhir"
)

// maxAnswer is the most an answer about one bad resource may weigh.
const maxAnswer = 64 << 10

// decodeOutcome decodes an OperationOutcome's issues.
func decodeOutcome(t *testing.T, body []byte) []fhir.OutcomeIssue {
	t.Helper()
	var oo fhir.OperationOutcome
	require.NoError(t, json.Unmarshal(body, &oo))
	require.Equal(t, "OperationOutcome", oo.ResourceType)
	return oo.Issue
}

// requireCapped checks an answer lists at most fhir.MaxIssues problems and
// ends with the count of those not shown.
func requireCapped(t *testing.T, issues []fhir.OutcomeIssue) {
	t.Helper()
	require.Len(t, issues, fhir.MaxIssues+1)
	last := issues[fhir.MaxIssues]
	assert.Equal(t, "information", last.Severity)
	assert.Regexp(t, `^\d+ further problems not shown`, last.Diagnostics)
}

// TestHazard_AmplifiedAnswer: a hostile body with tens of thousands of
// problems gets a small, capped answer, not one a hundred times its size
// (the review measured 118 MB for a 0.9 MB $validate body).
func TestHazard_AmplifiedAnswer(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		la := e.laToken(la1)
		body := hostileValidateBody(1000 << 10)
		require.Greater(t, strings.Count(body, `"bad"`), 20000)

		r := e.do(http.MethodPost, "EpisodeOfCare/$validate", la, body)
		require.Equal(t, http.StatusOK, r.Code)
		assert.Less(t, r.Body.Len(), maxAnswer)
		requireCapped(t, decodeOutcome(t, r.Body.Bytes()))

		r = e.do(http.MethodPut, "EpisodeOfCare/p1", la, strings.Replace(body, `{`, `{"id":"p1",`, 1))
		require.Equal(t, http.StatusBadRequest, r.Code)
		assert.Less(t, r.Body.Len(), maxAnswer)
		requireCapped(t, decodeOutcome(t, r.Body.Bytes()))

		// A body nested far deeper than any resource: one issue.
		deep := `{"resourceType":"EpisodeOfCare","extension":` + strings.Repeat(`[`, 200000) + strings.Repeat(`]`, 200000) + `}`
		r = e.do(http.MethodPost, "EpisodeOfCare/$validate", la, deep)
		require.Equal(t, http.StatusOK, r.Code)
		issues := decodeOutcome(t, r.Body.Bytes())
		require.Len(t, issues, 1)
		assert.Contains(t, issues[0].Diagnostics, "nests deeper than 64 levels")
	})
}

// TestHazard_AmplifiedBundleAnswer: a Bundle of many entries, each bad in
// many ways, is answered within bounds: a transaction stops checking once
// it has fhir.MaxIssues problems and answers with at most that many; a
// batch answers every entry but lists problems in full only up to a
// budget, then the first of each entry and a count.
func TestHazard_AmplifiedBundleAnswer(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		la := e.laToken(la1)
		const n = 600
		tx := hostileBundleOf("transaction", n, 20)
		r := e.post(la, tx)
		require.Equal(t, http.StatusBadRequest, r.Code)
		assert.Less(t, r.Body.Len(), maxAnswer)
		issues := decodeOutcome(t, r.Body.Bytes())
		requireCapped(t, issues)
		assert.Contains(t, issues[0].Diagnostics, "further entries were not checked")

		batch := hostileBundleOf("batch", n, 20)
		r = e.post(la, batch)
		require.Equal(t, http.StatusOK, r.Code)
		// about 500 bytes for each issue of the budget, 1 KB for each entry's
		// own answer beyond it (without the budget: 60 issues an entry, 13 MB)
		assert.Less(t, r.Body.Len(), 10*fhir.MaxIssues*500+n*1000)
		var out fhir.Bundle
		require.NoError(t, json.Unmarshal(r.Body.Bytes(), &out))
		require.Len(t, out.Entry, n, "every batch entry is answered")
		total := 0
		for i, en := range out.Entry {
			require.NotNil(t, en.Response)
			assert.Equal(t, "400 Bad Request", en.Response.Status)
			issues := decodeOutcome(t, en.Response.Outcome)
			assert.LessOrEqual(t, len(issues), fhir.MaxIssues+1)
			if i == n-1 {
				require.Len(t, issues, 2, "past the budget: the first problem and a count")
				assert.Regexp(t, `^\d+ further problems with this entry not shown`, issues[1].Diagnostics)
			}
			total += len(issues)
		}
		assert.LessOrEqual(t, total, 10*fhir.MaxIssues+2*n+fhir.MaxIssues)
		e.requireNothingStoredFor(t, n)
	})
}

func (e *env) requireNothingStoredFor(t *testing.T, n int) {
	t.Helper()
	r := e.do(http.MethodGet, flagSearch(nhsA), e.nurse(), "")
	require.Equal(t, http.StatusOK, r.Code)
	assert.Equal(t, 0, r.total())
	for _, i := range []int{0, n / 2, n - 1} {
		r := e.do(http.MethodGet, fmt.Sprintf("EpisodeOfCare/h%d", i), e.laToken(la1), "")
		assert.Equal(t, http.StatusNotFound, r.Code)
	}
}
