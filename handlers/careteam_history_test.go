package handlers_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCareTeamVersions reads a plan's earlier versions as CareTeams
// (vread and _history), each audited as the Flag's are: one AuditEvent per
// patient shown, naming the CareTeam; another authority's plan is not
// found, a deleted plan is gone for clinicians, a plan past retention is
// not found, and a B0170-only user may not read by id.
func TestCareTeamVersions(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b) // 2026-06-15, retention 365 days
		e.putOrg("o1", la1, "Somerset Council")
		e.putOrg("o2", la2, "Devon Council")
		e.putPlan(planSpec{id: "cpp", nhs: nhsA, la: la1, planType: "CPP"})
		e.putPlan(planSpec{id: "cpp", nhs: nhsA, la: la1, planType: "LAC"}) // the plan type corrected
		nurse := e.nurse()

		r := e.do(http.MethodGet, "CareTeam/cpp/_history/1", nurse, "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		ct := r.json()
		requireLANumbers(t, ct, la1)
		assert.Equal(t, "cpp", ct["id"])
		assert.Equal(t, "1", jget(t, ct, "meta", "versionId"))
		assert.Equal(t, "CPP", jget(t, ct, "category", 0, "coding", 0, "code"))
		assert.Equal(t, `W/"1"`, r.Header().Get("ETag"))
		e.requireProfileValid(t, ct)
		audits := e.auditOf(nhsA)
		require.Len(t, audits, 1, "a vread is audited")
		assert.Contains(t, string(audits[0].Body), "CareTeam/cpp")
		assert.Contains(t, string(audits[0].Body), `"code":"vread"`)

		r = e.do(http.MethodGet, "CareTeam/cpp/_history", nurse, "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		assert.Equal(t, "history", jget(t, r.json(), "type"))
		assert.Equal(t, 2, r.total())
		var types []string
		for _, en := range r.entries("") {
			requireLANumbers(t, en, la1)
			e.requireProfileValid(t, en)
			types = append(types, jpath[string](t, en, "category", 0, "coding", 0, "code"))
		}
		assert.Equal(t, []string{"LAC", "CPP"}, types, "newest first")
		assert.True(t, strings.HasPrefix(r.link("self"), base+"/CareTeam/cpp/_history"), r.link("self"))
		audits = e.auditOf(nhsA)
		require.Len(t, audits, 2, "a history read is audited once per patient")
		assert.Contains(t, string(audits[1].Body), `"code":"history-instance"`)
		assert.Contains(t, string(audits[1].Body), "CareTeam/cpp")

		// Another authority's plan: not found, as a missing id.
		for _, path := range []string{"CareTeam/cpp/_history/1", "CareTeam/cpp/_history"} {
			r = e.do(http.MethodGet, path, e.laToken(la2), "")
			assert.Equal(t, http.StatusNotFound, r.Code, path)
			assert.NotContains(t, r.Body.String(), nhsA)
		}
		r = e.do(http.MethodGet, "CareTeam/cpp/_history/1", e.laToken(la1), "")
		assert.Equal(t, http.StatusOK, r.Code, "the managing authority reads its own")
		assert.Equal(t, http.StatusNotFound, e.do(http.MethodGet, "CareTeam/cpp/_history/9", nurse, "").Code)

		// By id a read is never silent.
		for _, h := range [][]string{nil, {"IsUnscheduledAccessEvent", "false"}} {
			for _, path := range []string{"CareTeam/cpp/_history/1", "CareTeam/cpp/_history"} {
				r = e.do(http.MethodGet, path, e.gp(), "", h...)
				assert.Equal(t, http.StatusForbidden, r.Code, path)
				assert.NotContains(t, r.Body.String(), nhsA)
			}
		}

		// Deleted as recorded in error: gone for clinicians.
		e.putPlan(planSpec{id: "wrong", nhs: nhsB, la: la1})
		require.Equal(t, http.StatusOK, e.do(http.MethodDelete, "EpisodeOfCare/wrong", e.laToken(la1), "").Code)
		for _, path := range []string{"CareTeam/wrong/_history/1", "CareTeam/wrong/_history"} {
			r = e.do(http.MethodGet, path, nurse, "")
			assert.Equal(t, http.StatusGone, r.Code, path)
			assert.NotContains(t, r.Body.String(), nhsB)
		}
		assert.Empty(t, e.auditOf(nhsB))

		// Ended past retention: not found.
		e.putPlan(planSpec{id: "old", nhs: nhsC, la: la1, start: "2024-01-01", end: "2025-06-01"})
		for _, path := range []string{"CareTeam/old/_history/1", "CareTeam/old/_history"} {
			assert.Equal(t, http.StatusNotFound, e.do(http.MethodGet, path, nurse, "").Code, path)
		}
		assert.Empty(t, e.auditOf(nhsC))
	})
}

// TestCareTeamNeedsTheFlagPermission: a CareTeam discloses what the Flag
// does, so reading one needs the Flag's permission and nothing else: a
// local authority system's system/Flag.read (a system/CareTeam.read scope
// grants nothing, and the refusal names the scope needed), a health
// user's B0107 (or B0170 for a silent search).
func TestCareTeamNeedsTheFlagPermission(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putOrg("o1", la1, "Somerset Council")
		e.putPlan(planSpec{id: "cpp", nhs: nhsA, la: la1})
		for _, tc := range []struct {
			name   string
			token  string
			status int
		}{
			{"la-flag-read-200", e.laToken(la1, "system/Flag.read"), http.StatusOK},
			{"la-all-read-200", e.laToken(la1, "system/*.read"), http.StatusOK},
			{"la-careteam-scope-403", e.laToken(la1, "system/CareTeam.read"), http.StatusForbidden},
			{"la-plan-read-403", e.laToken(la1, "system/EpisodeOfCare.read"), http.StatusForbidden},
			{"nurse-b0107-200", e.nurse(), http.StatusOK},
			{"no-activity-403", e.userToken("B9999"), http.StatusForbidden},
		} {
			t.Run(tc.name, func(t *testing.T) {
				for _, path := range []string{careTeamSearch(nhsA), "CareTeam/cpp", "CareTeam/cpp/_history/1", "CareTeam/cpp/_history"} {
					r := e.do(http.MethodGet, path, tc.token, "")
					require.Equal(t, tc.status, r.Code, path+": "+r.Body.String())
					if tc.status == http.StatusForbidden {
						assert.Equal(t, "ACCESS_DENIED", r.code())
						assert.NotContains(t, r.Body.String(), nhsA)
					}
					if strings.HasPrefix(tc.name, "la-") && tc.status == http.StatusForbidden {
						assert.Contains(t, r.Body.String(), "system/Flag.read", "the refusal names the scope a CareTeam needs")
					}
				}
			})
		}
	})
}
