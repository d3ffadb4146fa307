package handlers_test

// Searches by NHS number: what they audit.
// Each test failed on the code before its fix (from the security and
// contract review; the Finding numbers are the review's).

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
)

// auditBody decodes a stored access record's AuditEvent.
func auditBody(t *testing.T, a store.AuditRecord) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(a.Body, &m))
	return m
}

// Finding 1: a health user's search that shows only a count (_summary=count,
// _count=0) or only part of the matches (_count=1) learns that the child is
// on plans, so every local authority whose plan matched must be told, and
// the AuditEvent must say how many plans were found. Before the fix the
// access record named only the owners of the records on the page: with
// _summary=count it named none (no notification at all) and said "No plan
// found" while the answer's total said 2.
func TestSearchAuditNamesEveryMatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
		e.putPlan(planSpec{id: "a2", nhs: nhsA, la: la2})
		for _, q := range []string{"&_summary=count", "&_count=0", "&_count=1"} {
			t.Run(strings.TrimPrefix(q, "&"), func(t *testing.T) {
				before := len(e.auditOf(nhsA))
				r := e.do(http.MethodGet, flagSearch(nhsA)+q, e.nurse(), "")
				require.Equal(t, http.StatusOK, r.Code, r.Body.String())
				require.Equal(t, 2, r.total())
				recs := e.auditOf(nhsA)
				require.Len(t, recs, before+1, "one access record per patient")
				a := recs[len(recs)-1]
				assert.Equal(t, []string{la1, la2}, a.Owners, "every LA whose plan matched is told")
				assert.Equal(t, "2 plans found", auditBody(t, a)["outcomeDesc"])
			})
		}
		// The LA whose plan was not on any page still sees the accesses in its feed.
		feed := e.do(http.MethodGet, "AuditEvent?date=ge2026-01-01", e.laToken(la2), "")
		require.Equal(t, http.StatusOK, feed.Code, feed.Body.String())
		assert.Len(t, feed.entries("match"), 3)
	})
}
