package handlers_test

import (
	"database/sql"
	"encoding/base64"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
	"cpis/store/sqlite"
)

func careTeamSearch(nhs string) string {
	return "CareTeam?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|" + nhs
}

// requireLANumbers checks a CareTeam carries its local authority's two
// numbers: office hours rank 1, emergency duty team rank 2.
func requireLANumbers(t *testing.T, ct map[string]any, la string) {
	t.Helper()
	assert.Equal(t, "CareTeam", ct["resourceType"])
	assert.Equal(t, "https://fhir.cpis.dev/StructureDefinition/CPIS-CareTeam", jget(t, ct, "meta", "profile", 0))
	assert.Equal(t, la, jget(t, ct, "managingOrganization", 0, "identifier", "value"))
	telecom := jpath[[]any](t, ct, "telecom")
	require.Len(t, telecom, 2, "the LA's two numbers")
	assert.Equal(t, "0300 123 1000", jget(t, telecom[0], "value"))
	assert.EqualValues(t, 1, jget(t, telecom[0], "rank"))
	assert.Equal(t, "0300 123 9999", jget(t, telecom[1], "value"))
	assert.EqualValues(t, 2, jget(t, telecom[1], "rank"))
}

// TestCareTeamSearchByNHSNumber serves the national API's CareTeam search
// for each plan type (UCPP on the mother's NHS number), rendered with the
// LA's numbers, audited before the answer, in every spelling of the
// parameter and by POST _search.
func TestCareTeamSearchByNHSNumber(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putOrg("o1", la1, "Somerset Council")
		e.putPlan(planSpec{id: "cpp", nhs: nhsA, la: la1, planType: "CPP"})
		e.putPlan(planSpec{id: "lac", nhs: nhsB, la: la1, planType: "LAC"})
		e.putPlan(planSpec{id: "ucpp", nhs: nhsC, la: la1, planType: "UCPP"}) // the mother's NHS number
		for _, tc := range []struct{ nhs, id, planType string }{{nhsA, "cpp", "CPP"}, {nhsB, "lac", "LAC"}, {nhsC, "ucpp", "UCPP"}} {
			t.Run(tc.planType, func(t *testing.T) {
				before := len(e.auditOf(tc.nhs))
				r := e.do(http.MethodGet, careTeamSearch(tc.nhs), e.nurse(), "")
				require.Equal(t, http.StatusOK, r.Code, r.Body.String())
				require.Equal(t, 1, r.total())
				m := r.entries("match")
				require.Len(t, m, 1)
				assert.Equal(t, tc.id, m[0]["id"])
				assert.Equal(t, "active", m[0]["status"])
				assert.Equal(t, tc.nhs, jget(t, m[0], "subject", "identifier", "value"))
				assert.Equal(t, tc.planType, jget(t, m[0], "category", 0, "coding", 0, "code"))
				requireLANumbers(t, m[0], la1)
				audits := e.auditOf(tc.nhs)
				require.Len(t, audits, before+1, "one AuditEvent per search, written before the answer")
				assert.True(t, strings.Contains(string(audits[0].Body), base64.StdEncoding.EncodeToString([]byte("CareTeam?"))[:12]),
					"the AuditEvent records the CareTeam search")
				assert.Equal(t, []string{la1}, audits[0].Owners)
			})
		}
		for _, spelling := range []string{"patient.identifier", "subject:identifier", "subject.identifier"} {
			r := e.do(http.MethodGet, "CareTeam?"+spelling+"=https://fhir.nhs.uk/Id/nhs-number|"+nhsA, e.nurse(), "")
			require.Equal(t, http.StatusOK, r.Code, spelling)
			assert.Equal(t, 1, r.total(), spelling)
		}
		r := e.doForm("CareTeam/_search", e.nurse(), "patient:identifier=https://fhir.nhs.uk/Id/nhs-number|"+nhsA)
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		require.Len(t, r.entries("match"), 1)
		requireLANumbers(t, r.entries("match")[0], la1)

		// A health user must name the patient.
		r = e.do(http.MethodGet, "CareTeam", e.nurse(), "")
		assert.Equal(t, http.StatusBadRequest, r.Code)
	})
}

// TestHazard_CareTeamShowsAnotherLAsPlan checks a local authority sees
// only its own plans as CareTeams, by search and by id.
func TestHazard_CareTeamShowsAnotherLAsPlan(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putOrg("o1", la1, "Somerset Council")
		e.putOrg("o2", la2, "Devon Council")
		e.putPlan(planSpec{id: "mine", nhs: nhsA, la: la1})
		e.putPlan(planSpec{id: "theirs", nhs: nhsA, la: la2})

		r := e.do(http.MethodGet, careTeamSearch(nhsA), e.laToken(la1), "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		assert.Equal(t, 1, r.total())
		require.Len(t, r.entries("match"), 1)
		assert.Equal(t, "mine", r.entries("match")[0]["id"])
		assert.NotContains(t, r.Body.String(), la2)
		assert.Equal(t, http.StatusNotFound, e.do(http.MethodGet, "CareTeam/theirs", e.laToken(la1), "").Code)

		// A clinician sees both, each with its own LA's numbers.
		r = e.do(http.MethodGet, careTeamSearch(nhsA), e.nurse(), "")
		require.Equal(t, http.StatusOK, r.Code)
		assert.Equal(t, 2, r.total())
		las := map[string]bool{}
		for _, m := range r.entries("match") {
			la := jpath[string](t, m, "managingOrganization", 0, "identifier", "value")
			requireLANumbers(t, m, la)
			las[la] = true
		}
		assert.Equal(t, map[string]bool{la1: true, la2: true}, las)
	})
}

// TestCareTeamSilentSearch: a scheduled-care GP (B0170) searching with
// IsUnscheduledAccessEvent: false gets the CareTeam, no AuditEvent is
// written (the security log records it), and may not read one by id.
func TestCareTeamSilentSearch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putOrg("o1", la1, "Somerset Council")
		e.putPlan(planSpec{id: "cpp", nhs: nhsA, la: la1})
		r := e.do(http.MethodGet, careTeamSearch(nhsA), e.gp(), "", "IsUnscheduledAccessEvent", "false")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		require.Len(t, r.entries("match"), 1)
		requireLANumbers(t, r.entries("match")[0], la1)
		assert.Empty(t, e.auditOf(nhsA), "a silent read writes no AuditEvent")
		assert.Equal(t, 1, strings.Count(e.logs.String(), `"msg":"silent read"`))

		// Without the silent switch the GP may not read at all.
		assert.Equal(t, http.StatusForbidden, e.do(http.MethodGet, careTeamSearch(nhsA), e.gp(), "").Code)
		// By id a read is never silent: 403 for a B0170-only user.
		for _, h := range [][]string{nil, {"IsUnscheduledAccessEvent", "false"}} {
			r = e.do(http.MethodGet, "CareTeam/cpp", e.gp(), "", h...)
			assert.Equal(t, http.StatusForbidden, r.Code, r.Body.String())
			assert.NotContains(t, r.Body.String(), nhsA)
		}
		assert.Empty(t, e.auditOf(nhsA))
	})
}

// TestCareTeamReadByID reads a plan as its CareTeam by id: audited as a
// Flag read, ended plans past retention are gone, writes are 405.
func TestCareTeamReadByID(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b) // 2026-06-15, retention 365 days
		e.putOrg("o1", la1, "Somerset Council")
		e.putPlan(planSpec{id: "cpp", nhs: nhsA, la: la1})
		e.putPlan(planSpec{id: "old", nhs: nhsA, la: la1, start: "2024-01-01", end: "2025-06-01"})
		e.putPlan(planSpec{id: "recent", nhs: nhsA, la: la1, start: "2024-01-01", end: "2025-07-01"})

		r := e.do(http.MethodGet, "CareTeam/cpp", e.nurse(), "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		requireLANumbers(t, r.json(), la1)
		audits := e.auditOf(nhsA)
		require.Len(t, audits, 1, "a read by id is audited")
		assert.Contains(t, string(audits[0].Body), "CareTeam/cpp")

		// Retention: the ended plan past retention is not returned.
		r = e.do(http.MethodGet, careTeamSearch(nhsA), e.nurse(), "")
		require.Equal(t, http.StatusOK, r.Code)
		assert.Equal(t, 2, r.total())
		ids := map[string]string{}
		for _, m := range r.entries("match") {
			ids[m["id"].(string)] = m["status"].(string)
		}
		assert.Equal(t, map[string]string{"cpp": "active", "recent": "inactive"}, ids)
		assert.Equal(t, http.StatusNotFound, e.do(http.MethodGet, "CareTeam/old", e.nurse(), "").Code)
		assert.Equal(t, http.StatusNotFound, e.do(http.MethodGet, "CareTeam/none", e.nurse(), "").Code)

		for _, tc := range []struct{ method, path string }{
			{http.MethodPost, "CareTeam"}, {http.MethodPut, "CareTeam/cpp"}, {http.MethodDelete, "CareTeam/cpp"},
		} {
			r := e.do(tc.method, tc.path, e.laToken(la1), `{"resourceType":"CareTeam"}`)
			assert.Equal(t, http.StatusMethodNotAllowed, r.Code, tc.method+" "+tc.path)
		}
	})
}

// TestCapabilityStatementOffersCareTeam: the CapabilityStatement lists
// CareTeam with its profile, read and search-type, and the patient param.
func TestCapabilityStatementOffersCareTeam(t *testing.T) {
	e := newEnv(t, backends()[0])
	r := e.do(http.MethodGet, "metadata", "", "")
	require.Equal(t, http.StatusOK, r.Code)
	var ct map[string]any
	for _, res := range jpath[[]any](t, r.json(), "rest", 0, "resource") {
		if m := res.(map[string]any); m["type"] == "CareTeam" {
			ct = m
		}
	}
	require.NotNil(t, ct, "CareTeam is in the CapabilityStatement")
	assert.Equal(t, "https://fhir.cpis.dev/StructureDefinition/CPIS-CareTeam", ct["profile"])
	var codes []string
	for _, in := range jpath[[]any](t, ct, "interaction") {
		codes = append(codes, in.(map[string]any)["code"].(string))
	}
	assert.ElementsMatch(t, []string{"read", "vread", "history-instance", "search-type"}, codes)
	var params []string
	for _, p := range jpath[[]any](t, ct, "searchParam") {
		params = append(params, p.(map[string]any)["name"].(string))
	}
	assert.Contains(t, params, "patient")
}

// TestHazard_CareTeamWithoutTheLANumbers makes the store fail the lookup of
// the local authority's Organization (its key table is gone, on the real
// SQLite store) and checks the CareTeam search and read answer 503 with no
// CareTeam, rather than a CareTeam without the numbers to call, and that
// nobody is told of an access that showed nothing.
func TestHazard_CareTeamWithoutTheLANumbers(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, backend{name: "sqlite", open: func(t testing.TB) store.Store { return openSQLite(t, dir) }})
	e.putOrg("o1", la1, "Somerset Council")
	e.putPlan(planSpec{id: "cpp", nhs: nhsA, la: la1})

	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, sqlite.FileName)+"?_pragma=busy_timeout(5000)")
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Exec(`ALTER TABLE keys RENAME TO keys_hidden`)
	require.NoError(t, err)

	for _, path := range []string{careTeamSearch(nhsA), "CareTeam/cpp", "CareTeam/cpp/_history/1", "CareTeam/cpp/_history"} {
		r := e.do(http.MethodGet, path, e.nurse(), "")
		require.Equal(t, http.StatusServiceUnavailable, r.Code, r.Body.String())
		assert.NotContains(t, r.Body.String(), `"CareTeam"`)
		assert.NotContains(t, r.Body.String(), nhsA)
	}
	assert.Empty(t, e.auditOf(nhsA), "no access is recorded for an answer that showed nothing")

	_, err = db.Exec(`ALTER TABLE keys_hidden RENAME TO keys`)
	require.NoError(t, err)
	r := e.do(http.MethodGet, careTeamSearch(nhsA), e.nurse(), "")
	require.Equal(t, http.StatusOK, r.Code, r.Body.String())
	requireLANumbers(t, r.entries("match")[0], la1)
}

// TestCareTeamSearchPages pages a CareTeam search with the server's links:
// every plan once, each page a CareTeam with the LA's numbers, and the
// first page's AuditEvent counts every match, not only the page.
func TestCareTeamSearchPages(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putOrg("o1", la1, "Somerset Council")
		for _, id := range []string{"p1", "p2", "p3", "p4", "p5"} {
			e.putPlan(planSpec{id: id, nhs: nhsA, la: la1})
		}
		seen := map[string]bool{}
		next := careTeamSearch(nhsA) + "&_count=2"
		pages := 0
		for next != "" {
			r := e.do(http.MethodGet, strings.TrimPrefix(next, base+"/"), e.nurse(), "")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Equal(t, 5, r.total())
			for _, m := range r.entries("match") {
				requireLANumbers(t, m, la1)
				id := jpath[string](t, m, "id")
				assert.False(t, seen[id], "no repeats")
				seen[id] = true
			}
			next = r.link("next")
			if next != "" {
				assert.True(t, strings.HasPrefix(next, base+"/CareTeam?"), next)
			}
			pages++
			require.Less(t, pages, 10)
		}
		assert.Len(t, seen, 5)
		assert.Equal(t, 3, pages)
		audits := e.auditOf(nhsA)
		require.NotEmpty(t, audits)
		assert.Contains(t, string(audits[len(audits)-1].Body), `"5 plans found"`, "the first page's AuditEvent counts every match")
	})
}
