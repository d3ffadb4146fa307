package handlers_test

// The national CP-IS FHIR consumer API's access history: the AuditEvent
// search with the accessing users' PractitionerRoles included, honest about
// what it ignores, and the national error table.

import (
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/profiles"
)

// nationalInclude is the _include the national API publishes, verbatim.
const nationalInclude = "AuditEvent:entity-type=http://terminology.hl7.org/CodeSystem/v3-RoleClass|ASSIGNED"

func auditSearch(nhs string) string {
	return "AuditEvent?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|" + nhs
}

// testCatalog is the CP-IS profiles, loaded once for the test binary.
var testCatalog struct {
	once sync.Once
	cat  *profiles.Catalog
	err  error
}

func catalog(t *testing.T) *profiles.Catalog {
	t.Helper()
	testCatalog.once.Do(func() {
		london, err := time.LoadLocation("Europe/London")
		if err != nil {
			testCatalog.err = err
			return
		}
		testCatalog.cat, testCatalog.err = profiles.Load(london)
	})
	require.NoError(t, testCatalog.err)
	return testCatalog.cat
}

// requireProfileValid checks a resource the server returned is valid
// against its CP-IS profile (the harness has already checked it is valid
// R4).
func (e *env) requireProfileValid(t *testing.T, res map[string]any) {
	t.Helper()
	cat := catalog(t)
	body, err := json.Marshal(res)
	require.NoError(t, err)
	decoded, issues := e.codec.Decode(body)
	require.NotNil(t, decoded, "%s", body)
	require.Empty(t, issues, "%s", body)
	require.NotEmpty(t, cat.ProfileOf(decoded.Type), decoded.Type)
	assert.Empty(t, cat.Validate(decoded), "valid against the CP-IS %s profile: %s", decoded.Type, body)
}

// includedRoles checks the PractitionerRoles of an access-history answer:
// each is included once (search.mode include) under a fullUrl that every
// AuditEvent's user agent reference resolves to, each is valid against
// CPIS-PractitionerRole, and every user agent references one. It returns the
// roles by practitioner name.
func (e *env) includedRoles(t *testing.T, r resp) map[string]map[string]any {
	t.Helper()
	var b struct {
		Entry []struct {
			FullURL  string         `json:"fullUrl"`
			Resource map[string]any `json:"resource"`
			Search   struct {
				Mode string `json:"mode"`
			} `json:"search"`
		} `json:"entry"`
	}
	require.NoError(t, json.Unmarshal(r.Body.Bytes(), &b))
	byURL := map[string]map[string]any{}
	byName := map[string]map[string]any{}
	for _, en := range b.Entry {
		if en.Search.Mode != "include" {
			continue
		}
		require.Equal(t, "PractitionerRole", en.Resource["resourceType"], "only PractitionerRoles are included")
		id := jpath[string](t, en.Resource, "id")
		assert.Equal(t, base+"/PractitionerRole/"+id, en.FullURL)
		require.NotContains(t, byURL, en.FullURL, "each PractitionerRole is included once")
		byURL[en.FullURL] = en.Resource
		byName[jpath[string](t, en.Resource, "practitioner", "display")] = en.Resource
		assert.Equal(t, profiles.PractitionerRoleProfile, jget(t, en.Resource, "meta", "profile", 0))
		e.requireProfileValid(t, en.Resource)
	}
	referenced := map[string]bool{}
	for _, en := range b.Entry {
		if en.Search.Mode != "match" {
			continue
		}
		e.requireProfileValid(t, en.Resource)
		for _, ag := range jpath[[]any](t, en.Resource, "agent") {
			if jget(t, ag, "type", "coding", 0, "code") != "ASSIGNED" {
				continue
			}
			ref := jpath[string](t, ag, "who", "reference")
			require.True(t, strings.HasPrefix(ref, "PractitionerRole/"), ref)
			assert.Contains(t, byURL, base+"/"+ref, "the agent's reference resolves inside the Bundle")
			referenced[base+"/"+ref] = true
		}
	}
	assert.Len(t, referenced, len(byURL), "every included PractitionerRole is an agent of an AuditEvent shown")
	return byName
}

// accesses sets up the access history of nhsA: First Nurse searches the
// Flag, Second Nurse the CareTeam with a TraceID, and First Nurse again two
// days later (a second access, one person: one PractitionerRole).
func nationalAccesses(t *testing.T, e *env) {
	t.Helper()
	e.putOrg("o1", la1, "Somerset Council")
	e.putPlan(planSpec{id: "cpp", nhs: nhsA, la: la1})
	first := e.namedUser("u-first", "First Nurse", "B0107")
	require.Equal(t, http.StatusOK, e.do(http.MethodGet, flagSearch(nhsA), first, "").Code)
	r := e.do(http.MethodGet, careTeamSearch(nhsA), e.namedUser("u-second", "Second Nurse", "B0107"), "", "TraceID", "trace-second-1")
	require.Equal(t, http.StatusOK, r.Code, r.Body.String())
	e.clock.Add(48 * time.Hour)
	require.Equal(t, http.StatusOK, e.do(http.MethodGet, flagSearch(nhsA), first, "").Code)
	require.Len(t, e.auditOf(nhsA), 3)
}

// TestNationalAccessHistoryIncludesPractitionerRoles serves the national
// API's access history in every form a client sends the include: the
// AuditEvents as matches, one PractitionerRole per person who accessed
// (two nurses: two; the same nurse twice: one), each AuditEvent's agent
// referencing it. A scheduled-care GP reads silently, so the history does
// not change between the forms; a nurse's read is audited with its TraceID.
func TestNationalAccessHistoryIncludesPractitionerRoles(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		nationalAccesses(t, e)
		gp := e.gp()
		silent := []string{"IsUnscheduledAccessEvent", "false"}
		forms := []struct{ name, path string }{
			{"national-verbatim", auditSearch(nhsA) + "&_include=" + nationalInclude},
			{"national-url-encoded", auditSearch(nhsA) + "&_include=" + url.QueryEscape(nationalInclude)},
			{"national-pipe-encoded", auditSearch(nhsA) + "&_include=" + strings.ReplaceAll(nationalInclude, "|", "%7C")},
			{"agent", auditSearch(nhsA) + "&_include=AuditEvent:agent"},
			{"agent-practitionerrole", auditSearch(nhsA) + "&_include=AuditEvent:agent:PractitionerRole"},
			{"patient.identifier", "AuditEvent?patient.identifier=https://fhir.nhs.uk/Id/nhs-number|" + nhsA + "&_include=" + nationalInclude},
			{"entity:identifier", "AuditEvent?entity:identifier=https://fhir.nhs.uk/Id/nhs-number|" + nhsA + "&_include=AuditEvent:agent"},
		}
		check := func(t *testing.T, r resp) {
			t.Helper()
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Equal(t, 3, r.total())
			assert.Len(t, r.entries("match"), 3)
			assert.Empty(t, r.entries("outcome"), "nothing was ignored")
			roles := e.includedRoles(t, r)
			require.Len(t, roles, 2, "two nurses: two PractitionerRoles, the first nurse's two accesses share one")
			names := make([]string, 0, len(roles))
			for n := range roles {
				names = append(names, n)
			}
			sort.Strings(names)
			assert.Equal(t, []string{"First Nurse", "Second Nurse"}, names)
			pr := roles["First Nurse"]
			assert.Equal(t, "u-first", jget(t, pr, "practitioner", "identifier", "value"))
			assert.Equal(t, "https://fhir.nhs.uk/Id/sds-user-id", jget(t, pr, "practitioner", "identifier", "system"))
			assert.Equal(t, "Ru-first", jget(t, pr, "identifier", 0, "value"))
			assert.Equal(t, "S8000:G8000:R8001", jget(t, pr, "code", 0, "coding", 0, "code"), "the SDS job role code the AuditEvent recorded")
			assert.Equal(t, "Nurse", jget(t, pr, "code", 0, "text"))
			assert.Equal(t, "RBA", jget(t, pr, "organization", "identifier", "value"))
			assert.Equal(t, "Somerset NHS Foundation Trust", jget(t, pr, "organization", "display"))
		}
		for _, f := range forms {
			t.Run(f.name, func(t *testing.T) { check(t, e.do(http.MethodGet, f.path, gp, "", silent...)) })
		}
		t.Run("post-_search", func(t *testing.T) {
			req := "patient:identifier=" + url.QueryEscape("https://fhir.nhs.uk/Id/nhs-number|"+nhsA) + "&silent=true&_include=" + url.QueryEscape(nationalInclude)
			check(t, e.doForm("AuditEvent/_search", gp, req))
		})
		t.Run("without-include", func(t *testing.T) {
			r := e.do(http.MethodGet, auditSearch(nhsA), gp, "", silent...)
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Len(t, r.entries("match"), 3)
			assert.Empty(t, r.entries("include"))
			assert.NotContains(t, r.Body.String(), "PractitionerRole")
		})
		require.Len(t, e.auditOf(nhsA), 3, "the silent reads wrote no AuditEvent")

		// A nurse's read of the history is itself an access: audited before
		// the answer, with its TraceID, and shown (with its
		// PractitionerRole) from then on.
		reader := e.namedUser("u-reader", "Reading Nurse", "B0107")
		r := e.do(http.MethodGet, auditSearch(nhsA)+"&_include="+nationalInclude, reader, "", "TraceID", "trace-national-7")
		check(t, r)
		assert.Equal(t, "trace-national-7", r.Header().Get("TraceID"))
		recs := e.auditOf(nhsA)
		require.Len(t, recs, 4)
		last := recs[len(recs)-1]
		assert.Equal(t, "user:u-reader", last.Agent)
		assert.Contains(t, string(last.Body), `"value":"trace-national-7"`, "the TraceID is recorded in the AuditEvent")
		assert.Contains(t, string(last.Body), `"code":"S8000:G8000:R8001"`, "the AuditEvent records the SDS job role code")
		r = e.do(http.MethodGet, auditSearch(nhsA)+"&_include=AuditEvent:agent", gp, "", silent...)
		require.Equal(t, http.StatusOK, r.Code)
		assert.Len(t, e.includedRoles(t, r), 3)
	})
}

// TestAuditEventRecordsTheJobRoleCode: the AuditEvent of an access names
// the SDS job role code of the role the user acted in (CIS2 role_code), as
// the national API's PractitionerRole needs it.
func TestAuditEventRecordsTheJobRoleCode(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: "cpp", nhs: nhsA, la: la1})
		require.Equal(t, http.StatusOK, e.do(http.MethodGet, flagSearch(nhsA), e.nurse(), "").Code)
		r := e.do(http.MethodGet, "AuditEvent?date=ge2026-01-01", e.laToken(la1), "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		ev := r.entries("match")
		require.Len(t, ev, 1)
		role := jget(t, ev[0], "agent", 0, "role", 0)
		assert.Equal(t, profiles.JobRoleCodeSystem, jget(t, role, "coding", 0, "system"))
		assert.Equal(t, "S8000:G8000:R8001", jget(t, role, "coding", 0, "code"))
		assert.Equal(t, "Nurse Access Role", jget(t, role, "coding", 0, "display"))
		e.requireProfileValid(t, ev[0])
	})
}

// TestHazard_IncludedRoleShowsAnotherLAsAccess: a local authority's access
// history and feed include the PractitionerRoles of the people who
// accessed its own children's plans, never of someone who read only
// another authority's plan, and its AuditEvents stay its own view.
func TestHazard_IncludedRoleShowsAnotherLAsAccess(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: "mine", nhs: nhsA, la: la1})
		e.putPlan(planSpec{id: "theirs", nhs: nhsA, la: la2})
		// Only LA002's plan, by id.
		require.Equal(t, http.StatusOK, e.do(http.MethodGet, "Flag/theirs", e.namedUser("u-other", "Other Nurse", "B0107"), "").Code)
		// Both authorities' plans, by NHS number.
		require.Equal(t, http.StatusOK, e.do(http.MethodGet, flagSearch(nhsA), e.namedUser("u-both", "Both Nurse", "B0107"), "").Code)

		for _, path := range []string{auditSearch(nhsA) + "&_include=" + nationalInclude, "AuditEvent?date=ge2026-01-01&_include=AuditEvent:agent"} {
			r := e.do(http.MethodGet, path, e.laToken(la1), "")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			require.Len(t, r.entries("match"), 1, path)
			roles := e.includedRoles(t, r)
			require.Len(t, roles, 1, path)
			assert.Contains(t, roles, "Both Nurse")
			body := r.Body.String()
			assert.NotContains(t, body, "Other Nurse", path)
			assert.NotContains(t, body, "u-other", path)
			assert.NotContains(t, body, "theirs", path)
			assert.Equal(t, "1 plan found", r.entries("match")[0]["outcomeDesc"], "LA001's own view of the access")

			r = e.do(http.MethodGet, path, e.laToken(la2), "")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Len(t, r.entries("match"), 2, path)
			assert.Len(t, e.includedRoles(t, r), 2, path)
		}
	})
}

// TestAuditEventSearchReportsWhatItIgnores: an AuditEvent search (the
// access history and the LA's feed) lists an unsupported _include or an
// unknown parameter in an OperationOutcome entry instead of dropping it
// silently, and with Prefer: handling=strict refuses it (400).
func TestAuditEventSearchReportsWhatItIgnores(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: "cpp", nhs: nhsA, la: la1})
		require.Equal(t, http.StatusOK, e.do(http.MethodGet, flagSearch(nhsA), e.nurse(), "").Code)
		gp, la := e.gp(), e.laToken(la1)
		silent := []string{"IsUnscheduledAccessEvent", "false"}
		for _, tc := range []struct {
			name, path, token, ignored string
		}{
			{"history-unsupported-include", auditSearch(nhsA) + "&_include=AuditEvent:patient", gp, "_include=AuditEvent:patient"},
			{"history-other-target", auditSearch(nhsA) + "&_include=AuditEvent:agent:Practitioner", gp, "_include=AuditEvent:agent:Practitioner"},
			{"history-other-role-class", auditSearch(nhsA) + "&_include=AuditEvent:entity-type=http://terminology.hl7.org/CodeSystem/v3-RoleClass|PROV", gp,
				"_include=AuditEvent:entity-type=http://terminology.hl7.org/CodeSystem/v3-RoleClass|PROV"},
			{"history-revinclude", auditSearch(nhsA) + "&_revinclude=Provenance:target", gp, "_revinclude"},
			{"history-unknown-param", auditSearch(nhsA) + "&action=R", gp, "action"},
			{"feed-unknown-param", "AuditEvent?date=ge2026-01-01&agent=x", la, "agent"},
			{"feed-unsupported-include", "AuditEvent?date=ge2026-01-01&_include=AuditEvent:source", la, "_include=AuditEvent:source"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				headers := []string{}
				if tc.token == gp {
					headers = silent
				}
				r := e.do(http.MethodGet, tc.path, tc.token, "", headers...)
				require.Equal(t, http.StatusOK, r.Code, r.Body.String())
				assert.Len(t, r.entries("match"), 1, "the search is still answered")
				assert.Empty(t, r.entries("include"))
				oo := r.entries("outcome")
				require.Len(t, oo, 1, "the ignored parameter is reported: %s", r.Body.String())
				assert.Equal(t, "OperationOutcome", oo[0]["resourceType"])
				assert.Contains(t, jpath[string](t, oo[0], "issue", 0, "diagnostics"), tc.ignored)
				assert.Equal(t, "warning", jget(t, oo[0], "issue", 0, "severity"))

				strict := e.do(http.MethodGet, tc.path, tc.token, "", append(headers, "Prefer", "handling=strict")...)
				require.Equal(t, http.StatusBadRequest, strict.Code, strict.Body.String())
				assert.Equal(t, "INVALID_SEARCH_DATA", strict.code())
				assert.Contains(t, strict.Body.String(), tc.ignored)
			})
		}
		// _summary=count is honoured, not ignored: the total only.
		r0 := e.do(http.MethodGet, auditSearch(nhsA)+"&_summary=count&_include=AuditEvent:agent", gp, "", silent...)
		require.Equal(t, http.StatusOK, r0.Code, r0.Body.String())
		assert.Equal(t, 1, r0.total())
		assert.Empty(t, r0.entries(""), "no entries with _summary=count")

		// A supported include under strict handling is served.
		r := e.do(http.MethodGet, auditSearch(nhsA)+"&_include="+nationalInclude, gp, "", append(silent, "Prefer", "handling=strict")...)
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		assert.Len(t, e.includedRoles(t, r), 1)
	})
}

// TestNationalErrorTable checks the answers the national API's error table
// defines, on its two requests: a bad NHS number (400 invalid
// INVALID_SEARCH_DATA), a missing or invalid IsUnscheduledAccessEvent header
// value (400 invalid PRECONDITION_FAILED) and a user without the activity
// (403 forbidden ACCESS_DENIED). Each is refused before anything is read,
// so nothing is audited.
func TestNationalErrorTable(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putOrg("o1", la1, "Somerset Council")
		e.putPlan(planSpec{id: "cpp", nhs: nhsA, la: la1})
		nurse := e.nurse()
		nobody := e.userToken("B9999")
		for _, req := range []struct{ name, search string }{
			{"careteam", "CareTeam?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|"},
			{"auditevent", "AuditEvent?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|"},
		} {
			for _, tc := range []struct {
				name, path, token string
				headers           []string
				status            int
				issue, code       string
			}{
				{"bad-check-digit-400", req.search + "9449306754&_include=" + nationalInclude, nurse, nil, 400, "invalid", "INVALID_SEARCH_DATA"},
				{"nine-digits-400", req.search + "944930675", nurse, nil, 400, "invalid", "INVALID_SEARCH_DATA"},
				{"letters-400", req.search + "94493O6753", nurse, nil, 400, "invalid", "INVALID_SEARCH_DATA"},
				{"bad-header-400", req.search + nhsA, nurse, []string{"IsUnscheduledAccessEvent", "yes"}, 400, "invalid", "PRECONDITION_FAILED"},
				{"empty-header-400", req.search + nhsA, nurse, []string{"IsUnscheduledAccessEvent", ""}, 400, "invalid", "PRECONDITION_FAILED"},
				{"no-activity-403", req.search + nhsA, nobody, nil, 403, "forbidden", "ACCESS_DENIED"},
			} {
				t.Run(req.name+"-"+tc.name, func(t *testing.T) {
					r := e.do(http.MethodGet, tc.path, tc.token, "", tc.headers...)
					require.Equal(t, tc.status, r.Code, r.Body.String())
					assert.Equal(t, tc.issue, jget(t, r.json(), "issue", 0, "code"))
					assert.Equal(t, "error", jget(t, r.json(), "issue", 0, "severity"))
					assert.Equal(t, tc.code, r.code())
					assert.NotContains(t, r.Body.String(), nhsA)
				})
			}
		}
		assert.Empty(t, e.auditOf(nhsA), "refused requests read and audit nothing")
	})
}
