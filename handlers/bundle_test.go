package handlers_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/fhir"
	"cpis/handlers"
)

// Bundle fixtures.

// entry is one request entry of a posted Bundle.
type entry struct {
	method, url, resource, ifMatch, ifNoneExist, fullURL string
}

func (en entry) json() string {
	req := map[string]string{"method": en.method, "url": en.url}
	if en.ifMatch != "" {
		req["ifMatch"] = en.ifMatch
	}
	if en.ifNoneExist != "" {
		req["ifNoneExist"] = en.ifNoneExist
	}
	r, _ := json.Marshal(req)
	var b strings.Builder
	b.WriteString("{")
	if en.fullURL != "" {
		fmt.Fprintf(&b, `"fullUrl":%q,`, en.fullURL)
	}
	if en.resource != "" {
		fmt.Fprintf(&b, `"resource":%s,`, en.resource)
	}
	fmt.Fprintf(&b, `"request":%s}`, r)
	return b.String()
}

func bundleJSON(typ string, entries ...entry) string {
	parts := make([]string, len(entries))
	for i, en := range entries {
		parts[i] = en.json()
	}
	return `{"resourceType":"Bundle","type":"` + typ + `","entry":[` + strings.Join(parts, ",") + `]}`
}

func putPlanEntry(p planSpec) entry {
	return entry{method: "PUT", url: "EpisodeOfCare/" + p.id, resource: planJSON(p)}
}

func condPlanEntry(p planSpec) entry {
	return entry{method: "PUT", url: "EpisodeOfCare?identifier=https://" + strings.ToLower(p.la) + ".example/plan-id|" + p.ident, resource: planJSON(p)}
}

// testNHS is the i-th valid NHS number from 9990000000 up.
func testNHS(i int) string {
	for n := 999000000 + i*2; ; n++ {
		nine := fmt.Sprint(n)
		if d := fhir.NHSNumberCheckDigit(nine); d >= 0 {
			return nine + fmt.Sprint(d)
		}
	}
}

// post sends a Bundle to the base.
func (e *env) post(token, body string, headers ...string) resp {
	e.t.Helper()
	return e.do(http.MethodPost, base, token, body, headers...)
}

// responses are the response elements of a response Bundle's entries.
func (r resp) responses() []map[string]any {
	m := r.json()
	require.Equal(r.t, "Bundle", m["resourceType"], "body: %s", r.Body.String())
	var out []map[string]any
	for _, en := range jpath[[]any](r.t, m, "entry") {
		out = append(out, jpath[map[string]any](r.t, en, "response"))
	}
	return out
}

func (r resp) statuses() []string {
	var out []string
	for _, rs := range r.responses() {
		out = append(out, jpath[string](r.t, rs, "status"))
	}
	return out
}

// count is how many live resources of a type an LA manages.
func (e *env) count(typ, la string) int {
	e.t.Helper()
	r := e.do(http.MethodGet, typ+"?_summary=count", e.laToken(la), "")
	require.Equal(e.t, http.StatusOK, r.Code, r.Body.String())
	return r.total()
}

// requireEmpty checks that nothing at all was written for the LA: no
// plans, no Flags, no history of the ids given.
func (e *env) requireEmpty(la string, ids ...string) {
	e.t.Helper()
	assert.Equal(e.t, 0, e.count("EpisodeOfCare", la), "no plans")
	assert.Equal(e.t, 0, e.count("Flag", la), "no Flags")
	assert.Equal(e.t, 0, e.count("Organization", la), "no Organization")
	for _, id := range ids {
		r := e.do(http.MethodGet, "EpisodeOfCare/"+id+"/_history", e.laToken(la), "")
		assert.Equal(e.t, http.StatusNotFound, r.Code, "no history of %s", id)
	}
}

func TestTransaction(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.requireTransactions(t)
		la := e.laToken(la1)
		body := bundleJSON("transaction",
			entry{method: "PUT", url: "Organization/org1", resource: orgJSON("org1", la1, "Local Authority One")},
			putPlanEntry(planSpec{id: "p1", nhs: nhsA, la: la1}),
			condPlanEntry(planSpec{nhs: nhsB, la: la1, ident: "P-2", planType: "LAC"}),
			entry{method: "POST", url: "EpisodeOfCare", resource: planJSON(planSpec{nhs: nhsC, la: la1, planType: "UCPP"})},
		)
		r := e.post(la, body)
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		m := r.json()
		assert.Equal(t, "transaction-response", m["type"])
		assert.Equal(t, []string{"201 Created", "201 Created", "201 Created", "201 Created"}, r.statuses())
		for i, rs := range r.responses() {
			assert.Equal(t, `W/"1"`, rs["etag"], "entry %d", i)
			assert.Regexp(t, `^`+base+`/(Organization|EpisodeOfCare)/[A-Za-z0-9.-]+/_history/1$`, rs["location"], "entry %d", i)
			assert.NotEmpty(t, rs["lastModified"], "entry %d", i)
		}
		resources := r.entries("")
		require.Len(t, resources, 4, "return=representation is the default")
		assert.Equal(t, "p1", resources[1]["id"])

		// The Flags were derived in the same unit, named after the LA the
		// transaction wrote.
		for _, nhs := range []string{nhsA, nhsB, nhsC} {
			f := e.do(http.MethodGet, flagSearch(nhs), e.nurse(), "")
			require.Equal(t, 1, f.total(), nhs)
			flag := f.entries("match")[0]
			assert.Equal(t, "active", flag["status"])
			assert.Equal(t, "Local Authority One", jget(t, flag, "author", "display"))
		}

		t.Run("repeat-200-unchanged", func(t *testing.T) {
			r := e.post(la, body)
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Equal(t, []string{"200 OK", "200 OK", "200 OK", "201 Created"}, r.statuses(), "the plain POST creates again")
			for i, rs := range r.responses()[:3] {
				assert.Equal(t, `W/"1"`, rs["etag"], "entry %d: unchanged content is not written again", i)
			}
			h := e.do(http.MethodGet, "EpisodeOfCare/p1/_history", la, "")
			assert.Equal(t, 1, h.total())
		})

		t.Run("update-and-delete-200", func(t *testing.T) {
			r := e.post(la, bundleJSON("transaction",
				entry{method: "PUT", url: "EpisodeOfCare/p1", ifMatch: `W/"1"`, resource: planJSON(planSpec{id: "p1", nhs: nhsA, la: la1, end: "2026-06-01", status: "finished"})},
				entry{method: "DELETE", url: "EpisodeOfCare?identifier=x|y"},
			))
			require.Equal(t, http.StatusBadRequest, r.Code, "conditional delete is not supported")
			assert.Equal(t, []string{"INVALID_VALUE@Bundle.entry[1].request.url"}, r.issues())

			id := jpath[string](t, e.do(http.MethodGet, "EpisodeOfCare?identifier=https://la001.example/plan-id|P-2", la, "").entries("match")[0], "id")
			r = e.post(la, bundleJSON("transaction",
				entry{method: "PUT", url: "EpisodeOfCare/p1", ifMatch: `W/"1"`, resource: planJSON(planSpec{id: "p1", nhs: nhsA, la: la1, end: "2026-06-01", status: "finished"})},
				entry{method: "DELETE", url: "EpisodeOfCare/" + id},
			))
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Equal(t, []string{"200 OK", "200 OK"}, r.statuses())
			rs := r.responses()
			assert.Equal(t, `W/"2"`, rs[0]["etag"])
			assert.Equal(t, `W/"2"`, rs[1]["etag"])
			assert.NotContains(t, rs[1], "location")
			assert.Contains(t, rs[1], "outcome", "a delete answers with an OperationOutcome")
			assert.Equal(t, "inactive", e.do(http.MethodGet, "Flag/p1", e.nurse(), "").json()["status"])
			assert.Equal(t, http.StatusGone, e.do(http.MethodGet, "Flag/"+id, e.nurse(), "").Code, "the Flag went with its plan")
		})
	})
}

func TestTransactionIsAtomic(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.requireTransactions(t)
		la := e.laToken(la1)
		entries := []entry{{method: "PUT", url: "Organization/org1", resource: orgJSON("org1", la1, "Local Authority One")}}
		var ids []string
		for i := 1; i < 600; i++ {
			id := fmt.Sprintf("p%d", i)
			ids = append(ids, id)
			entries = append(entries, putPlanEntry(planSpec{id: id, nhs: testNHS(i), la: la1}))
		}
		bad := entries[499]
		entries[499] = putPlanEntry(planSpec{id: "p499", nhs: "9990000001", la: la1})

		t.Run("bad-500th-entry-422", func(t *testing.T) {
			r := e.post(la, bundleJSON("transaction", entries...))
			require.Equal(t, http.StatusUnprocessableEntity, r.Code, r.Body.String())
			assert.Equal(t, []string{"VALIDATION_ERROR@Bundle.entry[499].resource.patient.identifier.value"}, r.issues())
			e.requireEmpty(la1, ids...)
			assert.Equal(t, 0, e.do(http.MethodGet, flagSearch(testNHS(1)), e.nurse(), "").total(), "no Flags")
		})

		t.Run("every-problem-at-once", func(t *testing.T) {
			more := append([]entry(nil), entries...)
			more[3] = entry{method: "PUT", url: "EpisodeOfCare/p3", resource: strings.Replace(planJSON(planSpec{id: "p3", nhs: testNHS(3), la: la1}), `"status"`, `"colour":"red","status"`, 1)}
			more[7] = putPlanEntry(planSpec{id: "p7", nhs: testNHS(7), la: la1, planType: "XYZ"})
			more[9] = entry{method: "PATCH", url: "EpisodeOfCare/p9"}
			r := e.post(la, bundleJSON("transaction", more...))
			require.Equal(t, http.StatusBadRequest, r.Code, r.Body.String())
			assert.Equal(t, []string{
				"INVALID_VALUE@Bundle.entry[3].resource.colour",
				"VALIDATION_ERROR@Bundle.entry[7].resource.type[0].coding[0].code",
				"METHOD_NOT_ALLOWED@Bundle.entry[9].request.method",
				"VALIDATION_ERROR@Bundle.entry[499].resource.patient.identifier.value",
			}, r.issues())
			e.requireEmpty(la1, ids...)
		})

		t.Run("identifier-clash-at-500th-entry-412", func(t *testing.T) {
			e := newEnv(t, b) // a store with one plan, whose identifier entry 499 takes
			e.putPlan(planSpec{id: "held", nhs: nhsA, la: la1, ident: "HELD"})
			clash := append([]entry(nil), entries...)
			clash[499] = putPlanEntry(planSpec{id: "p499", nhs: testNHS(499), la: la1, ident: "HELD"})
			r := e.post(la, bundleJSON("transaction", clash...))
			require.Equal(t, http.StatusPreconditionFailed, r.Code, r.Body.String())
			assert.Equal(t, []string{"PRECONDITION_FAILED@Bundle.entry[499].resource.identifier"}, r.issues())
			assert.Equal(t, 1, e.count("EpisodeOfCare", la1), "only the plan that was there")
			assert.Equal(t, 1, e.count("Flag", la1))
			assert.Equal(t, 0, e.count("Organization", la1))
			for _, id := range ids {
				require.Equal(t, http.StatusNotFound, e.do(http.MethodGet, "EpisodeOfCare/"+id+"/_history", la, "").Code, "no history of %s", id)
			}
		})

		t.Run("good-600-entries-200", func(t *testing.T) {
			entries[499] = bad
			r := e.post(la, bundleJSON("transaction", entries...), "Prefer", "return=minimal")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Equal(t, 599, e.count("EpisodeOfCare", la1))
			assert.Equal(t, 599, e.count("Flag", la1))
		})
	})
}

func TestTransactionPermissions(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		la := e.laToken(la1)
		e.putPlan(planSpec{id: "theirs", nhs: nhsA, la: la2})
		good := []entry{
			{method: "PUT", url: "Organization/org1", resource: orgJSON("org1", la1, "Local Authority One")},
			putPlanEntry(planSpec{id: "p1", nhs: nhsA, la: la1}),
			putPlanEntry(planSpec{id: "p2", nhs: nhsB, la: la1}),
		}
		cases := []struct {
			name   string
			token  string
			extra  entry
			status int
			issues []string
		}{
			{"names-another-la-403", la, putPlanEntry(planSpec{id: "p3", nhs: nhsC, la: la2}), 403,
				[]string{"ACCESS_DENIED@Bundle.entry[3].resource.managingOrganization.identifier.value"}},
			{"overwrites-another-las-id-409", la, putPlanEntry(planSpec{id: "theirs", nhs: nhsC, la: la1}), 409,
				[]string{"INVALID_VALUE@Bundle.entry[3]"}},
			{"another-las-organization-403", la, entry{method: "PUT", url: "Organization/org2", resource: orgJSON("org2", la2, "Two")}, 403,
				[]string{"ACCESS_DENIED@Bundle.entry[3].resource.identifier"}},
			{"deletes-another-las-plan-404", la, entry{method: "DELETE", url: "EpisodeOfCare/theirs"}, 404,
				[]string{"RESOURCE_NOT_FOUND@Bundle.entry[3]"}},
			{"no-organization-scope-403", e.laToken(la1, "system/EpisodeOfCare.write"), putPlanEntry(planSpec{id: "p3", nhs: nhsC, la: la1}), 403,
				[]string{"ACCESS_DENIED@Bundle.entry[0]"}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r := e.post(tc.token, bundleJSON("transaction", append(good, tc.extra)...))
				require.Equal(t, tc.status, r.Code, r.Body.String())
				assert.Equal(t, tc.issues, r.issues())
				e.requireEmpty(la1, "p1", "p2")
				theirs := e.do(http.MethodGet, "EpisodeOfCare/theirs", e.laToken(la2), "")
				assert.Equal(t, `W/"1"`, theirs.Header().Get("ETag"), "the other LA's plan is untouched")
			})
		}

		t.Run("health-user-403", func(t *testing.T) {
			for _, tok := range []string{e.nurse(), e.gp()} {
				r := e.post(tok, bundleJSON("transaction", good...))
				require.Equal(t, http.StatusForbidden, r.Code)
				assert.Equal(t, "ACCESS_DENIED", r.code())
				r = e.post(tok, bundleJSON("batch", good...))
				require.Equal(t, http.StatusForbidden, r.Code)
			}
			e.requireEmpty(la1, "p1", "p2")
		})
		t.Run("read-only-system-403", func(t *testing.T) {
			r := e.post(e.laToken(la1, "system/EpisodeOfCare.read"), bundleJSON("batch", good...))
			require.Equal(t, http.StatusForbidden, r.Code)
			assert.Equal(t, "ACCESS_DENIED", r.code())
		})
	})
}

func TestTransactionConflicts(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.requireTransactions(t)
		la := e.laToken(la1)
		e.putPlan(planSpec{id: "held", nhs: nhsA, la: la1, ident: "HELD"})
		e.putPlan(planSpec{id: "v2", nhs: nhsA, la: la1})
		e.putPlan(planSpec{id: "v2", nhs: nhsA, la: la1, planType: "LAC"})
		fresh := putPlanEntry(planSpec{id: "fresh", nhs: nhsB, la: la1})
		cases := []struct {
			name    string
			entries []entry
			status  int
			issues  []string
		}{
			{"stale-if-match-412", []entry{fresh, {method: "PUT", url: "EpisodeOfCare/v2", ifMatch: `W/"1"`, resource: planJSON(planSpec{id: "v2", nhs: nhsA, la: la1, planType: "UCPP"})}},
				412, []string{"PRECONDITION_FAILED@Bundle.entry[1]"}},
			{"if-match-on-a-new-id-412", []entry{fresh, {method: "PUT", url: "EpisodeOfCare/nope", ifMatch: `W/"1"`, resource: planJSON(planSpec{id: "nope", nhs: nhsA, la: la1})}},
				412, []string{"PRECONDITION_FAILED@Bundle.entry[1]"}},
			{"bad-if-match-400", []entry{fresh, {method: "PUT", url: "EpisodeOfCare/v2", ifMatch: `soon`, resource: planJSON(planSpec{id: "v2", nhs: nhsA, la: la1})}},
				400, []string{"PRECONDITION_FAILED@Bundle.entry[1].request.ifMatch"}},
			{"identifier-held-by-another-plan-412", []entry{fresh, putPlanEntry(planSpec{id: "other", nhs: nhsA, la: la1, ident: "HELD"})},
				412, []string{"PRECONDITION_FAILED@Bundle.entry[1].resource.identifier"}},
			{"delete-missing-404", []entry{fresh, {method: "DELETE", url: "EpisodeOfCare/missing"}},
				404, []string{"RESOURCE_NOT_FOUND@Bundle.entry[1]"}},
			{"same-id-twice-400", []entry{fresh, putPlanEntry(planSpec{id: "fresh", nhs: nhsC, la: la1})},
				400, []string{"INVALID_VALUE@Bundle.entry[1]"}},
			{"same-condition-twice-400", []entry{fresh, condPlanEntry(planSpec{nhs: nhsA, la: la1, ident: "C"}), condPlanEntry(planSpec{nhs: nhsB, la: la1, ident: "C"})},
				400, []string{"INVALID_VALUE@Bundle.entry[2]"}},
			{"update-and-delete-of-one-plan-400", []entry{fresh, {method: "DELETE", url: "EpisodeOfCare/fresh"}},
				400, []string{"INVALID_VALUE@Bundle.entry[1]"}},
			{"condition-finds-an-id-another-entry-names-400", []entry{fresh, putPlanEntry(planSpec{id: "held", nhs: nhsA, la: la1, ident: "HELD"}), condPlanEntry(planSpec{nhs: nhsA, la: la1, ident: "HELD", planType: "LAC"})},
				400, []string{"INVALID_VALUE@Bundle.entry[2]"}},
			{"two-plans-with-one-identifier-400", []entry{fresh, putPlanEntry(planSpec{id: "a", nhs: nhsA, la: la1, ident: "TWIN"}), condPlanEntry(planSpec{nhs: nhsB, la: la1, ident: "TWIN"})},
				400, []string{"INVALID_VALUE@Bundle.entry[2]"}},
			{"same-full-url-twice-400", []entry{fresh, {method: "POST", url: "EpisodeOfCare", fullURL: "urn:uuid:1", resource: planJSON(planSpec{nhs: nhsA, la: la1})}, {method: "POST", url: "EpisodeOfCare", fullURL: "urn:uuid:1", resource: planJSON(planSpec{nhs: nhsA, la: la1})}},
				400, []string{"INVALID_VALUE@Bundle.entry[2]"}},
			{"unresolved-urn-reference-400", []entry{fresh, {method: "PUT", url: "EpisodeOfCare/x", resource: strings.Replace(planJSON(planSpec{id: "x", nhs: nhsA, la: la1}), `"managingOrganization":{`, `"managingOrganization":{"reference":"urn:uuid:nowhere",`, 1)}},
				400, []string{"INVALID_VALUE@Bundle.entry[1].resource.managingOrganization.reference"}},
			{"conditional-reference-400", []entry{fresh, {method: "PUT", url: "EpisodeOfCare/x", resource: strings.Replace(planJSON(planSpec{id: "x", nhs: nhsA, la: la1}), `"managingOrganization":{`, `"managingOrganization":{"reference":"Organization?identifier=a|b",`, 1)}},
				400, []string{"INVALID_VALUE@Bundle.entry[1].resource.managingOrganization.reference"}},
			{"read-entry-405", []entry{fresh, {method: "GET", url: "EpisodeOfCare/held"}},
				405, []string{"METHOD_NOT_ALLOWED@Bundle.entry[1].request.method"}},
			{"flag-entry-405", []entry{fresh, {method: "PUT", url: "Flag/held", resource: `{"resourceType":"Flag"}`}},
				405, []string{"METHOD_NOT_ALLOWED@Bundle.entry[1].request.url"}},
			{"id-not-matching-url-400", []entry{fresh, {method: "PUT", url: "EpisodeOfCare/a", resource: planJSON(planSpec{id: "b", nhs: nhsA, la: la1})}},
				400, []string{"INVALID_VALUE@Bundle.entry[1].resource.id"}},
			{"no-request-400", []entry{fresh, {resource: planJSON(planSpec{id: "b", nhs: nhsA, la: la1})}},
				400, []string{"INVALID_VALUE@Bundle.entry[1].request.url"}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r := e.post(la, bundleJSON("transaction", tc.entries...))
				require.Equal(t, tc.status, r.Code, r.Body.String())
				assert.Equal(t, tc.issues, r.issues())
				assert.Equal(t, http.StatusNotFound, e.do(http.MethodGet, "EpisodeOfCare/fresh", la, "").Code, "nothing written")
				assert.Equal(t, 2, e.count("EpisodeOfCare", la1))
				assert.Equal(t, `W/"2"`, e.do(http.MethodGet, "EpisodeOfCare/v2", la, "").Header().Get("ETag"))
				assert.Equal(t, `W/"1"`, e.do(http.MethodGet, "EpisodeOfCare/held", la, "").Header().Get("ETag"))
			})
		}

		t.Run("current-if-match-200", func(t *testing.T) {
			r := e.post(la, bundleJSON("transaction", entry{method: "PUT", url: "EpisodeOfCare/v2", ifMatch: `W/"2"`, resource: planJSON(planSpec{id: "v2", nhs: nhsA, la: la1, planType: "UCPP"})}))
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Equal(t, `W/"3"`, r.responses()[0]["etag"])
		})
	})
}

func TestBundleEnvelope(t *testing.T) {
	e := newEnv(t, backends()[0])
	la := e.laToken(la1)
	cases := []struct {
		name, body string
		status     int
		issues     []string
	}{
		{"not-json-400", `{"resourceType":"Bundle",`, 400, []string{"INVALID_VALUE@"}},
		{"not-an-object-400", `[]`, 400, []string{"INVALID_VALUE@"}},
		{"not-a-bundle-400", `{"resourceType":"Patient"}`, 400, []string{"INVALID_VALUE@resourceType", "INVALID_VALUE@Bundle.type"}},
		{"collection-400", `{"resourceType":"Bundle","type":"collection","entry":[]}`, 400, []string{"INVALID_VALUE@Bundle.type"}},
		{"unknown-element-400", `{"resourceType":"Bundle","type":"batch","colour":"red"}`, 400, []string{"INVALID_VALUE@Bundle.colour"}},
		{"entry-not-an-array-400", `{"resourceType":"Bundle","type":"batch","entry":{}}`, 400, []string{"INVALID_VALUE@Bundle.entry"}},
		{"two-values-400", `{"resourceType":"Bundle","type":"batch"} {}`, 400, []string{"INVALID_VALUE@"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.post(la, tc.body)
			require.Equal(t, tc.status, r.Code, r.Body.String())
			assert.Equal(t, tc.issues, r.issues())
		})
	}
	t.Run("empty-transaction-200", func(t *testing.T) {
		r := e.post(la, `{"resourceType":"Bundle","type":"transaction"}`)
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		assert.Equal(t, "transaction-response", r.json()["type"])
	})
	t.Run("xml-415", func(t *testing.T) {
		r := e.do(http.MethodPost, base, la, `<Bundle/>`, "Content-Type", "application/fhir+xml")
		assert.Equal(t, http.StatusUnsupportedMediaType, r.Code)
	})
	t.Run("trailing-slash", func(t *testing.T) {
		r := e.do(http.MethodPost, "/FHIR/R4/", la, `{"resourceType":"Bundle","type":"batch"}`)
		assert.Equal(t, http.StatusOK, r.Code, r.Body.String())
	})
}

func TestBundleLimits(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		small := func(d *handlers.Deps) {
			d.Limits = handlers.Limits{MaxResourceBytes: 1 << 20, MaxBundleBytes: 8 << 10, MaxBundleEntries: 5}
		}
		e := newEnv(t, b, small)
		la := e.laToken(la1)
		plans := func(n int) []entry {
			var out []entry
			for i := 0; i < n; i++ {
				out = append(out, putPlanEntry(planSpec{id: fmt.Sprintf("p%d", i), nhs: testNHS(i), la: la1}))
			}
			return out
		}
		for _, typ := range []string{"transaction", "batch"} {
			t.Run(typ+"-too-many-entries-413", func(t *testing.T) {
				r := e.post(la, bundleJSON(typ, plans(6)...))
				require.Equal(t, http.StatusRequestEntityTooLarge, r.Code, r.Body.String())
				assert.Equal(t, "INVALID_VALUE", r.code())
				assert.Contains(t, jget(t, r.json(), "issue", 0, "diagnostics"), "more than 5 entries")
				e.requireEmpty(la1, "p0")
			})
			t.Run(typ+"-too-large-413", func(t *testing.T) {
				big := planJSON(planSpec{id: "p0", nhs: nhsA, la: la1})
				big = strings.Replace(big, `"status"`, `"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">`+strings.Repeat("x", 9000)+`</div>"},"status"`, 1)
				r := e.post(la, bundleJSON(typ, entry{method: "PUT", url: "EpisodeOfCare/p0", resource: big}))
				require.Equal(t, http.StatusRequestEntityTooLarge, r.Code, r.Body.String())
				assert.Equal(t, "INVALID_VALUE", r.code())
				e.requireEmpty(la1, "p0")
			})
		}
		t.Run("at-the-limit-200", func(t *testing.T) {
			r := e.post(la, bundleJSON("batch", plans(5)...), "Prefer", "return=minimal")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		})

		md := e.do(http.MethodGet, "metadata", "", "").json()
		rest := jpath[map[string]any](t, md, "rest", 0)
		assert.Contains(t, rest["documentation"], "Bundle body 8192 bytes and 5 entries")
		var codes []string
		for _, i := range jpath[[]any](t, rest, "interaction") {
			codes = append(codes, jpath[string](t, i, "code"))
		}
		assert.Equal(t, []string{"transaction", "batch"}, codes)
	})
}

// entryStream is a Bundle body of n plan entries made as it is read, and
// counts what was read.
type entryStream struct {
	n, made int
	buf     bytes.Buffer
	done    bool
}

func (s *entryStream) Read(p []byte) (int, error) {
	for s.buf.Len() < len(p) && !s.done {
		switch {
		case s.made == 0:
			s.buf.WriteString(`{"resourceType":"Bundle","type":"transaction","entry":[`)
		case s.made == s.n:
			s.buf.WriteString(`]}`)
			s.done = true
			continue
		default:
			s.buf.WriteString(",")
		}
		s.buf.WriteString(putPlanEntry(planSpec{id: fmt.Sprintf("p%d", s.made), nhs: testNHS(s.made), la: la1}).json())
		s.made++
	}
	if s.buf.Len() == 0 {
		return 0, io.EOF
	}
	return s.buf.Read(p)
}

func TestBundleOfAHundredThousandEntriesIsRefusedEarly(t *testing.T) {
	e := newEnv(t, backends()[0])
	body := &entryStream{n: 100000}
	req := httptest.NewRequest(http.MethodPost, "/FHIR/R4", body)
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Authorization", "Bearer "+e.laToken(la1))
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, req)
	require.Equal(t, http.StatusRequestEntityTooLarge, w.Code, w.Body.String())
	e.requireValidR4(w.Body.Bytes())
	assert.Contains(t, w.Body.String(), "more than 5000 entries")
	assert.Less(t, body.made, 5100, "the entries after the 5001st were never read")
	e.requireEmpty(la1, "p0")
}

func TestBatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		la := e.laToken(la1)
		e.putPlan(planSpec{id: "theirs", nhs: nhsA, la: la2})
		r := e.post(la, bundleJSON("batch",
			putPlanEntry(planSpec{id: "p1", nhs: nhsA, la: la1}),
			putPlanEntry(planSpec{id: "bad", nhs: "9990000001", la: la1}),
			putPlanEntry(planSpec{id: "p2", nhs: nhsB, la: la2}),
			putPlanEntry(planSpec{id: "theirs", nhs: nhsB, la: la1}),
			entry{method: "DELETE", url: "EpisodeOfCare/missing"},
			entry{method: "GET", url: "EpisodeOfCare/p1"},
			condPlanEntry(planSpec{nhs: nhsC, la: la1, ident: "B-1"}),
			putPlanEntry(planSpec{id: "p1", nhs: nhsA, la: la1, planType: "LAC"}),
			entry{method: "PUT", url: "EpisodeOfCare/x", resource: strings.Replace(planJSON(planSpec{id: "x", nhs: nhsA, la: la1}), `"managingOrganization":{`, `"managingOrganization":{"reference":"urn:uuid:1",`, 1)},
		))
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		assert.Equal(t, "batch-response", r.json()["type"])
		assert.Equal(t, []string{"201 Created", "422 Unprocessable Entity", "403 Forbidden", "409 Conflict", "404 Not Found",
			"405 Method Not Allowed", "201 Created", "200 OK", "400 Bad Request"}, r.statuses())
		rs := r.responses()
		outcome := func(i int) string {
			oo, ok := rs[i]["outcome"].(map[string]any)
			require.True(t, ok, "entry %d has an outcome", i)
			is := jpath[map[string]any](t, oo, "issue", 0)
			return jpath[string](t, is, "details", "coding", 0, "code") + "@" + jpath[string](t, is, "expression", 0)
		}
		assert.Equal(t, "VALIDATION_ERROR@Bundle.entry[1].resource.patient.identifier.value", outcome(1))
		assert.Equal(t, "ACCESS_DENIED@Bundle.entry[2].resource.managingOrganization.identifier.value", outcome(2))
		assert.Equal(t, "INVALID_VALUE@Bundle.entry[3]", outcome(3))
		assert.Equal(t, "RESOURCE_NOT_FOUND@Bundle.entry[4]", outcome(4))
		assert.Equal(t, "METHOD_NOT_ALLOWED@Bundle.entry[5].request.method", outcome(5))
		assert.Equal(t, "INVALID_VALUE@Bundle.entry[8].resource.managingOrganization.reference", outcome(8))
		assert.Equal(t, `W/"2"`, rs[7]["etag"], "later entries see earlier ones")

		assert.Equal(t, 2, e.count("EpisodeOfCare", la1))
		assert.Equal(t, "LAC", jget(t, e.do(http.MethodGet, "Flag/p1", e.nurse(), "").json(), "code", "coding", 0, "code"))
		theirs := e.do(http.MethodGet, "EpisodeOfCare/theirs", e.laToken(la2), "")
		assert.Equal(t, `W/"1"`, theirs.Header().Get("ETag"))
		assert.Equal(t, 1, e.count("EpisodeOfCare", la2))
	})
}

func TestBundlePrefer(t *testing.T) {
	e := newEnv(t, backends()[0])
	la := e.laToken(la1)
	for i, tc := range []struct {
		prefer            string
		resource, outcome bool
	}{
		{"", true, false},
		{"return=representation", true, false},
		{"return=minimal", false, false},
		{"return=OperationOutcome", false, true},
	} {
		for _, typ := range []string{"transaction", "batch"} {
			t.Run(typ+"-"+tc.prefer, func(t *testing.T) {
				id := fmt.Sprintf("%s%d", typ, i)
				var headers []string
				if tc.prefer != "" {
					headers = []string{"Prefer", tc.prefer}
				}
				// A child of its own per entry: a second live plan for one
				// child is a duplicate, whose warning would add an outcome.
				r := e.post(la, bundleJSON(typ, putPlanEntry(planSpec{id: id, nhs: testNHS(len(id) + 10*i), la: la1})), headers...)
				require.Equal(t, http.StatusOK, r.Code, r.Body.String())
				en := jpath[map[string]any](t, r.json(), "entry", 0)
				_, hasResource := en["resource"]
				_, hasOutcome := jpath[map[string]any](t, en, "response")["outcome"]
				assert.Equal(t, tc.resource, hasResource)
				assert.Equal(t, tc.outcome, hasOutcome)
				assert.Equal(t, "201 Created", jget(t, en, "response", "status"))
				assert.Equal(t, base+"/EpisodeOfCare/"+id, en["fullUrl"])
			})
		}
	}
}

func TestTransactionResolvesReferencesBetweenEntries(t *testing.T) {
	e := newEnv(t, backends()[0])
	la := e.laToken(la1)
	plan := strings.Replace(planJSON(planSpec{nhs: nhsA, la: la1}), `"managingOrganization":{`, `"managingOrganization":{"reference":"urn:uuid:0b6b3d4e-6a57-4d4a-9b1e-6f8a2c0c1f11",`, 1)
	r := e.post(la, bundleJSON("transaction",
		entry{method: "POST", url: "EpisodeOfCare", resource: plan},
		entry{method: "PUT", url: "Organization/org1", fullURL: "urn:uuid:0b6b3d4e-6a57-4d4a-9b1e-6f8a2c0c1f11", resource: orgJSON("org1", la1, "Local Authority One")},
	))
	require.Equal(t, http.StatusOK, r.Code, r.Body.String())
	saved := r.entries("")[0]
	assert.Equal(t, "Organization/org1", jget(t, saved, "managingOrganization", "reference"))
	got := e.do(http.MethodGet, "EpisodeOfCare/"+jpath[string](t, saved, "id"), la, "").json()
	assert.Equal(t, "Organization/org1", jget(t, got, "managingOrganization", "reference"), "stored resolved")
}

// TestTransactionsRaceSinglePuts runs transactions of conditional PUTs
// against single conditional PUTs of the same plans: each plan ends up once,
// with one Flag, and every request was applied.
func TestTransactionsRaceSinglePuts(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.requireTransactions(t)
		la := e.laToken(la1)
		const keys, rounds = 5, 6
		plan := func(k, round int, kind string) planSpec {
			// Each request writes different content, so each is a new version.
			return planSpec{nhs: testNHS(k), la: la1, ident: fmt.Sprintf("R-%d", k), start: fmt.Sprintf("2026-01-%02d", round+1), status: map[string]string{"tx": "active", "single": "waitlist"}[kind]}
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		created := map[string]int{}
		fail := func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			t.Errorf(format, args...)
		}
		for round := 0; round < rounds; round++ {
			wg.Add(1)
			go func(round int) {
				defer wg.Done()
				var entries []entry
				for k := 0; k < keys; k++ {
					entries = append(entries, condPlanEntry(plan(k, round, "tx")))
				}
				r := e.post(la, bundleJSON("transaction", entries...), "Prefer", "return=minimal")
				if r.Code != http.StatusOK {
					fail("transaction: %d %s", r.Code, r.Body.String())
					return
				}
				for k, st := range r.statuses() {
					if st == "201 Created" {
						mu.Lock()
						created[fmt.Sprint(k)]++
						mu.Unlock()
					}
				}
			}(round)
			for k := 0; k < keys; k++ {
				wg.Add(1)
				go func(k, round int) {
					defer wg.Done()
					p := plan(k, round, "single")
					r := e.do(http.MethodPut, condPlanEntry(p).url, la, planJSON(p))
					switch r.Code {
					case http.StatusCreated:
						mu.Lock()
						created[fmt.Sprint(k)]++
						mu.Unlock()
					case http.StatusOK:
					default:
						fail("single PUT: %d %s", r.Code, r.Body.String())
					}
				}(k, round)
			}
		}
		wg.Wait()
		for k := 0; k < keys; k++ {
			assert.Equal(t, 1, created[fmt.Sprint(k)], "plan %d was created once", k)
			r := e.do(http.MethodGet, "EpisodeOfCare?identifier=https://la001.example/plan-id|"+fmt.Sprintf("R-%d", k), la, "")
			require.Equal(t, 1, r.total(), "one plan per identifier")
			id := jpath[string](t, r.entries("match")[0], "id")
			h := e.do(http.MethodGet, "EpisodeOfCare/"+id+"/_history", la, "")
			assert.Equal(t, 2*rounds, h.total(), "every request was applied to plan %d", k)
		}
		assert.Equal(t, keys, e.count("Flag", la1), "one Flag per plan")
	})
}

// TestTransactionRefusedWithoutTransactions checks that on a database without
// multi-document transactions a transaction Bundle is refused with a clear
// OperationOutcome and nothing written, while batches still work.
func TestTransactionRefusedWithoutTransactions(t *testing.T) {
	ran := false
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		if tx, ok := e.store.(interface{ Transactions() bool }); !ok || tx.Transactions() {
			t.Skip("this database has transactions")
		}
		ran = true
		la := e.laToken(la1)
		r := e.post(la, bundleJSON("transaction",
			putPlanEntry(planSpec{id: "p1", nhs: nhsA, la: la1}),
			putPlanEntry(planSpec{id: "p2", nhs: nhsB, la: la1})))
		require.Equal(t, http.StatusNotImplemented, r.Code, r.Body.String())
		assert.Contains(t, jget(t, r.json(), "issue", 0, "diagnostics"), "batch Bundle instead")
		e.requireEmpty(la1, "p1")
		e.requireEmpty(la1, "p2")

		r = e.post(la, bundleJSON("batch",
			putPlanEntry(planSpec{id: "p1", nhs: nhsA, la: la1}),
			putPlanEntry(planSpec{id: "p2", nhs: nhsB, la: la1})))
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		assert.Equal(t, http.StatusOK, e.do(http.MethodGet, "Flag/p2", e.nurse(), "").Code)
	})
	require.True(t, ran, "the embedded FerretDB has no transactions, so this must have run there")
}

// TestBundleWithWhitespaceRuns: whitespace between tokens means nothing, so
// a Bundle padded with runs of it (which the reader collapses as it
// streams) is applied exactly as the same Bundle without.
func TestBundleWithWhitespaceRuns(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		body := bundleJSON("transaction", putPlanEntry(planSpec{id: "p1", nhs: nhsA, la: la1}))
		var padded bytes.Buffer
		require.NoError(t, json.Indent(&padded, []byte(body), strings.Repeat("\t", 4096), strings.Repeat(" \r\n", 4096)))
		require.Greater(t, padded.Len(), 1<<20)
		body = padded.String()
		r := e.post(e.laToken(la1), body)
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		assert.Equal(t, []string{"201 Created"}, r.statuses())
		got := e.do(http.MethodGet, "EpisodeOfCare/p1", e.laToken(la1), "")
		require.Equal(t, http.StatusOK, got.Code, got.Body.String())
	})
}
