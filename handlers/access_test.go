package handlers_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPermissions checks every rule of contract section 4 with real signed
// tokens through the real engine.
func TestPermissions(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putOrg("org1", la1, "Local Authority One")
		e.putOrg("org2", la2, "Local Authority Two")
		e.putPlan(planSpec{id: "mine", nhs: nhsA, la: la1})
		e.putPlan(planSpec{id: "theirs", nhs: nhsB, la: la2})

		nurse, gp := e.nurse(), e.gp()
		both := e.userToken("B0107", "B0170")
		nobody := e.userToken()
		otherCodes := e.userToken("B0825")
		la1tok, la2tok := e.laToken(la1), e.laToken(la2)
		laReadOnly := e.laToken(la1, "system/EpisodeOfCare.read", "system/Flag.read")
		laNoFlags := e.laToken(la1, "system/EpisodeOfCare.*")
		laV2 := e.laToken(la1, "system/EpisodeOfCare.cruds", "system/Flag.rs")
		search := flagSearch(nhsA)

		type tc struct {
			name, method, path, token, body string
			headers                         []string
			status                          int
			code                            string
		}
		cases := []tc{
			{name: "b0107-search-200", method: "GET", path: search, token: nurse, status: 200},
			{name: "b0107-silent-search-403", method: "GET", path: search + "&silent=true", token: nurse, status: 403, code: "ACCESS_DENIED"},
			{name: "b0170-search-403", method: "GET", path: search, token: gp, status: 403, code: "ACCESS_DENIED"},
			{name: "b0170-silent-search-200", method: "GET", path: search + "&silent=true", token: gp, status: 200},
			{name: "b0170-silent-header-200", method: "GET", path: search, token: gp, headers: []string{"IsUnscheduledAccessEvent", "false"}, status: 200},
			{name: "b0170-unscheduled-header-403", method: "GET", path: search, token: gp, headers: []string{"IsUnscheduledAccessEvent", "true"}, status: 403, code: "ACCESS_DENIED"},
			{name: "bad-header-400", method: "GET", path: search, token: gp, headers: []string{"IsUnscheduledAccessEvent", "nope"}, status: 400, code: "PRECONDITION_FAILED"},
			{name: "switches-disagree-400", method: "GET", path: search + "&silent=true", token: both, headers: []string{"IsUnscheduledAccessEvent", "true"}, status: 400, code: "INVALID_VALUE"},
			{name: "both-codes-either-mode-200", method: "GET", path: search + "&silent=true", token: both, status: 200},
			{name: "no-codes-403", method: "GET", path: search, token: nobody, status: 403, code: "ACCESS_DENIED"},
			{name: "unrelated-codes-403", method: "GET", path: search, token: otherCodes, status: 403, code: "ACCESS_DENIED"},
			{name: "b0107-read-200", method: "GET", path: "Flag/mine", token: nurse, status: 200},
			{name: "b0107-read-other-la-200", method: "GET", path: "EpisodeOfCare/theirs", token: nurse, status: 200},
			{name: "b0170-read-403", method: "GET", path: "Flag/mine", token: gp, status: 403, code: "ACCESS_DENIED"},
			{name: "b0170-silent-read-403", method: "GET", path: "Flag/mine?silent=true", token: gp, status: 403, code: "ACCESS_DENIED"},
			{name: "b0170-silent-history-403", method: "GET", path: "Flag/mine/_history?silent=true", token: gp, status: 403, code: "ACCESS_DENIED"},
			{name: "b0107-org-read-200", method: "GET", path: "Organization/org2", token: nurse, status: 200},
			{name: "health-write-403", method: "PUT", path: "EpisodeOfCare/mine", token: nurse, body: planJSON(planSpec{id: "mine", nhs: nhsA, la: la1}), status: 403, code: "ACCESS_DENIED"},
			{name: "health-delete-403", method: "DELETE", path: "EpisodeOfCare/mine", token: both, status: 403, code: "ACCESS_DENIED"},
			{name: "la-search-own-200", method: "GET", path: search, token: la1tok, status: 200},
			{name: "la-silent-403", method: "GET", path: search + "&silent=true", token: la1tok, status: 403, code: "ACCESS_DENIED"},
			{name: "la-without-flag-scope-403", method: "GET", path: search, token: laNoFlags, status: 403, code: "ACCESS_DENIED"},
			{name: "la-v2-scopes-200", method: "GET", path: search, token: laV2, status: 200},
			{name: "la-read-own-200", method: "GET", path: "EpisodeOfCare/mine", token: la1tok, status: 200},
			{name: "la-read-other-404", method: "GET", path: "EpisodeOfCare/theirs", token: la1tok, status: 404, code: "RESOURCE_NOT_FOUND"},
			{name: "la-read-other-flag-404", method: "GET", path: "Flag/theirs", token: la1tok, status: 404, code: "RESOURCE_NOT_FOUND"},
			{name: "la-history-other-404", method: "GET", path: "EpisodeOfCare/theirs/_history", token: la1tok, status: 404, code: "RESOURCE_NOT_FOUND"},
			{name: "la-vread-other-404", method: "GET", path: "EpisodeOfCare/theirs/_history/1", token: la1tok, status: 404, code: "RESOURCE_NOT_FOUND"},
			{name: "la-write-naming-other-la-403", method: "PUT", path: "EpisodeOfCare/new", token: la1tok, body: planJSON(planSpec{id: "new", nhs: nhsA, la: la2}), status: 403, code: "ACCESS_DENIED"},
			{name: "la-takes-over-plan-id-409", method: "PUT", path: "EpisodeOfCare/theirs", token: la1tok, body: planJSON(planSpec{id: "theirs", nhs: nhsB, la: la1}), status: 409, code: "INVALID_VALUE"},
			{name: "la-delete-other-404", method: "DELETE", path: "EpisodeOfCare/theirs", token: la1tok, status: 404, code: "RESOURCE_NOT_FOUND"},
			{name: "la-read-only-write-403", method: "PUT", path: "EpisodeOfCare/mine", token: laReadOnly, body: planJSON(planSpec{id: "mine", nhs: nhsA, la: la1}), status: 403, code: "ACCESS_DENIED"},
			{name: "la-org-of-other-404", method: "GET", path: "Organization/org2", token: la1tok, status: 404, code: "RESOURCE_NOT_FOUND"},
			{name: "health-feed-400", method: "GET", path: "AuditEvent?date=ge2026-01-01", token: nurse, status: 400, code: "INVALID_SEARCH_DATA"},
			{name: "no-token-401", method: "GET", path: search, status: 401, code: "UNAUTHORISED"},
			{name: "garbage-token-401", method: "GET", path: search, token: "not.a.jwt", status: 401, code: "UNAUTHORISED"},
			{name: "metadata-without-token-200", method: "GET", path: "metadata", status: 200},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				r := e.do(c.method, c.path, c.token, c.body, c.headers...)
				require.Equal(t, c.status, r.Code, r.Body.String())
				if c.code != "" {
					assert.Equal(t, c.code, r.code())
				}
				if c.status == 401 {
					assert.True(t, strings.HasPrefix(r.Header().Get("WWW-Authenticate"), "Bearer"))
				}
				if c.status >= 400 {
					assert.NotContains(t, r.Body.String(), "goroutine", "never a stack")
				}
			})
		}
		// The refused writes changed nothing.
		r := e.do(http.MethodGet, "EpisodeOfCare/theirs", e.laToken(la2), "")
		assert.Equal(t, `W/"1"`, r.Header().Get("ETag"))
		r = e.do(http.MethodGet, "EpisodeOfCare/new", la2tok, "")
		assert.Equal(t, http.StatusNotFound, r.Code)
	})
}

func TestNegotiationAndHeaders(t *testing.T) {
	e := newEnv(t, backends()[0])
	nurse := e.nurse()
	cases := []struct {
		name    string
		method  string
		path    string
		body    string
		headers []string
		status  int
	}{
		{"accept-xml-406", "GET", "metadata", "", []string{"Accept", "application/fhir+xml"}, 406},
		{"format-xml-406", "GET", "metadata?_format=xml", "", nil, 406},
		{"accept-json-200", "GET", "metadata", "", []string{"Accept", "application/json"}, 200},
		{"accept-fhir-json-params-200", "GET", "metadata", "", []string{"Accept", "application/fhir+json; fhirVersion=4.0"}, 200},
		{"accept-any-200", "GET", "metadata", "", []string{"Accept", "text/html, */*;q=0.8"}, 200},
		{"format-json-200", "GET", "metadata?_format=json", "", nil, 200},
		{"xml-body-415", "PUT", "EpisodeOfCare/x", "<EpisodeOfCare/>", []string{"Content-Type", "application/fhir+xml"}, 415},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(c.method, c.path, nurse, c.body, c.headers...)
			assert.Equal(t, c.status, r.Code, r.Body.String())
			if c.status >= 400 {
				assert.Equal(t, "INVALID_VALUE", r.code())
			}
			assert.Contains(t, r.Header().Get("Content-Type"), "application/fhir+json")
		})
	}
	t.Run("request-id-echoed", func(t *testing.T) {
		r := e.do("GET", "metadata", "", "", "X-Request-ID", "abc-123", "X-Correlation-ID", "corr-9", "TraceID", "trace-7")
		assert.Equal(t, "abc-123", r.Header().Get("X-Request-ID"))
		assert.Equal(t, "corr-9", r.Header().Get("X-Correlation-ID"))
		assert.Equal(t, "trace-7", r.Header().Get("TraceID"))
	})
	t.Run("request-id-generated", func(t *testing.T) {
		r := e.do("GET", "metadata", "", "")
		assert.Len(t, r.Header().Get("X-Request-ID"), 36)
	})
	t.Run("unknown-route-404", func(t *testing.T) {
		r := e.do("GET", "Patient/1", nurse, "")
		assert.Equal(t, http.StatusNotFound, r.Code)
		assert.Equal(t, "RESOURCE_NOT_FOUND", r.code())
	})
	t.Run("ping", func(t *testing.T) {
		r := e.do("GET", "_ping", nurse, "")
		assert.Equal(t, http.StatusOK, r.Code)
		assert.Equal(t, "OperationOutcome", r.json()["resourceType"])
		assert.Equal(t, http.StatusUnauthorized, e.do("GET", "_ping", "", "").Code, "the same token check as every route")
	})
	t.Run("health", func(t *testing.T) {
		assert.Equal(t, http.StatusOK, e.do("GET", "/healthz", "", "").Code)
		assert.Equal(t, http.StatusOK, e.do("GET", "/readyz", "", "").Code)
	})
	t.Run("store-down-readyz-503", func(t *testing.T) {
		e2 := newEnv(t, backends()[0])
		require.NoError(t, e2.store.Close())
		assert.Equal(t, http.StatusServiceUnavailable, e2.do("GET", "/readyz", "", "").Code)
		r := e2.do("GET", flagSearch(nhsA), e2.nurse(), "")
		assert.Equal(t, http.StatusServiceUnavailable, r.Code, "a store error is a 503, never an empty answer")
		assert.Equal(t, "SERVICE_UNAVAILABLE", r.code())
	})
	t.Run("large-body-413", func(t *testing.T) {
		big := `{"resourceType":"EpisodeOfCare","id":"x","status":"active","text":{"status":"generated","div":"` + strings.Repeat("a", 2<<20) + `"}}`
		r := e.do("PUT", "EpisodeOfCare/x", e.laToken(la1), big)
		assert.Equal(t, http.StatusRequestEntityTooLarge, r.Code)
	})
}

func TestCapabilityStatement(t *testing.T) {
	e := newEnv(t, backends()[0])
	r := e.do("GET", "metadata", "", "")
	require.Equal(t, http.StatusOK, r.Code)
	m := r.json()
	assert.Equal(t, "CapabilityStatement", m["resourceType"])
	assert.Equal(t, "4.0.1", m["fhirVersion"])
	rest := jpath[map[string]any](t, m, "rest", 0)
	types := map[string]map[string]any{}
	for _, res := range jpath[[]any](t, rest, "resource") {
		rm := jpath[map[string]any](t, res)
		types[jpath[string](t, rm, "type")] = rm
	}
	for _, typ := range []string{"Flag", "EpisodeOfCare", "Organization", "AuditEvent"} {
		require.Contains(t, types, typ)
	}
	assert.Equal(t, []any{"Flag:author"}, types["Flag"]["searchInclude"])
	assert.Contains(t, jget(t, rest, "security", "description"), "B0170")
	var flagInteractions []string
	for _, i := range jpath[[]any](t, types["Flag"], "interaction") {
		flagInteractions = append(flagInteractions, jpath[string](t, i, "code"))
	}
	assert.NotContains(t, flagInteractions, "update", "Flags cannot be written")
	assert.Contains(t, flagInteractions, "search-type")

	// The profiles and $validate, and the definitions served to back them.
	la := e.laToken(la1)
	for _, typ := range []string{"Flag", "EpisodeOfCare", "Organization", "AuditEvent"} {
		profiles, _ := types[typ]["supportedProfile"].([]any)
		require.Len(t, profiles, 1, typ)
		r := e.do("GET", "StructureDefinition?url="+jpath[string](t, profiles[0]), la, "")
		require.Equal(t, http.StatusOK, r.Code)
		assert.Equal(t, 1, r.total(), "%s's profile is served", typ)
		assert.Equal(t, typ, r.entries("match")[0]["type"])
		ops, _ := types[typ]["operation"].([]any)
		require.Len(t, ops, 1, typ)
		op := jpath[map[string]any](t, ops[0])
		assert.Equal(t, "validate", op["name"])
		assert.Equal(t, "http://hl7.org/fhir/OperationDefinition/Resource-validate", op["definition"])
		r = e.do("POST", typ+"/$validate", la, `{"resourceType":"`+typ+`"}`)
		assert.Equal(t, http.StatusOK, r.Code, "the advertised operation exists for %s", typ)
	}
	// Each type lists a search parameter once: a client building its
	// search form from the statement would otherwise offer it twice.
	for typ, rm := range types {
		seen := map[string]bool{}
		params, _ := rm["searchParam"].([]any)
		for _, p := range params {
			name := jpath[string](t, p, "name")
			assert.False(t, seen[name], "%s lists the search parameter %s twice", typ, name)
			seen[name] = true
		}
	}
	for _, typ := range []string{"StructureDefinition", "CodeSystem", "ValueSet"} {
		require.Contains(t, types, typ)
		var params []string
		for _, p := range jpath[[]any](t, types[typ], "searchParam") {
			params = append(params, jpath[string](t, p, "name"))
		}
		assert.Contains(t, params, "url")
	}
}
