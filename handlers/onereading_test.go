package handlers_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/fhir"
)

// The two children of the review's hazard: a body that names one to the
// validator and the other to the code that reads the plan.
const (
	nhsFirst  = "9449306702"
	nhsSecond = "9449306818"
)

// twoReadingPlan is a plan for LA001 (id p1) with one of its elements
// written twice, in two spellings (or the same spelling twice).
func twoReadingPlan(old, twice string) string {
	p := planJSON(planSpec{id: "p1", nhs: nhsFirst, la: la1, start: "2026-01-10"})
	if !strings.Contains(p, old) {
		panic("fixture: " + old)
	}
	return strings.Replace(p, old, twice, 1)
}

// requireNothingStored checks that no plan p1 and no Flag for either child
// exists: the refused write changed nothing.
func (e *env) requireNothingStored(t *testing.T) {
	t.Helper()
	for _, nhs := range []string{nhsFirst, nhsSecond} {
		r := e.do(http.MethodGet, flagSearch(nhs), e.nurse(), "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		assert.Equal(t, 0, r.total(), "a Flag was stored for %s", nhs)
		r = e.do(http.MethodGet, "EpisodeOfCare?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|"+nhs, e.nurse(), "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		assert.Equal(t, 0, r.total(), "a plan was stored for %s", nhs)
	}
	r := e.do(http.MethodGet, "EpisodeOfCare/p1", e.laToken(la1), "")
	assert.Equal(t, http.StatusNotFound, r.Code, r.Body.String())
}

// requireRefusedAt checks a 400 INVALID_VALUE whose issues include one at
// each expression.
func requireRefusedAt(t *testing.T, r resp, exprs ...string) {
	t.Helper()
	require.Equal(t, http.StatusBadRequest, r.Code, r.Body.String())
	issues := r.issues()
	for _, x := range exprs {
		assert.Contains(t, issues, "INVALID_VALUE@"+x, r.Body.String())
	}
}

// twoReadingCases are the variants of the review: an element written with
// an upper-case first letter beside its real spelling, and the same key
// twice.
var twoReadingCases = []struct {
	name, old, twice, expr string
}{
	{"patient-identifier-Value",
		`"value":"` + nhsFirst + `"`, `"value":"` + nhsFirst + `","Value":"` + nhsSecond + `"`,
		"EpisodeOfCare.patient.identifier.Value"},
	{"period-End",
		`"period":{"start":"2026-01-10"}`, `"period":{"start":"2026-01-10","End":"2026-01-11"}`,
		"EpisodeOfCare.period.End"},
	{"coding-Code",
		`"code":"CPP"`, `"code":"CPP","Code":"LAC"`,
		"EpisodeOfCare.type[0].coding[0].Code"},
	{"Status",
		`"status":"active"`, `"status":"active","Status":"entered-in-error"`,
		"EpisodeOfCare.Status"},
	{"managingOrganization-identifier-Value",
		`"value":"` + la1 + `"`, `"value":"` + la1 + `","Value":"` + la2 + `"`,
		"EpisodeOfCare.managingOrganization.identifier.Value"},
	{"duplicate-patient-identifier-value",
		`"value":"` + nhsFirst + `"`, `"value":"` + nhsFirst + `","value":"` + nhsSecond + `"`,
		"EpisodeOfCare.patient.identifier.value"},
	{"duplicate-status",
		`"status":"active"`, `"status":"active","status":"entered-in-error"`,
		"EpisodeOfCare.status"},
}

// TestHazard_CaseVariantKeyNamesAnotherChild: a plan whose body can be read
// as naming one child (or LA, end date, plan type, status) by the validator
// and another by the code that stores the plan, derives its Flag and its
// search keys is refused whole, through every way a plan is written, and
// nothing is stored.
func TestHazard_CaseVariantKeyNamesAnotherChild(t *testing.T) {
	require.True(t, fhir.ValidNHSNumber(nhsFirst) && fhir.ValidNHSNumber(nhsSecond))
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		la := e.laToken(la1)
		for _, tc := range twoReadingCases {
			t.Run(tc.name, func(t *testing.T) {
				body := twoReadingPlan(tc.old, tc.twice)

				r := e.do(http.MethodPut, "EpisodeOfCare/p1", la, body)
				requireRefusedAt(t, r, tc.expr)

				// conditional create (If-None-Exist) and conditional update
				withIdent := strings.Replace(body, `"status"`, `"identifier":[{"system":"https://la001.example/plan-id","value":"X1"}],"status"`, 1)
				r = e.do(http.MethodPost, "EpisodeOfCare", la, withIdent, "If-None-Exist", "identifier=https://la001.example/plan-id|X1")
				requireRefusedAt(t, r, tc.expr)
				r = e.do(http.MethodPut, "EpisodeOfCare?identifier=https://la001.example/plan-id|X1", la, withIdent)
				requireRefusedAt(t, r, tc.expr)

				// in a transaction and in a batch
				en := entry{method: "PUT", url: "EpisodeOfCare/p1", resource: body}
				r = e.post(la, bundleJSON("transaction", en))
				requireRefusedAt(t, r, "Bundle.entry[0].resource"+strings.TrimPrefix(tc.expr, "EpisodeOfCare"))
				r = e.post(la, bundleJSON("batch", en))
				require.Equal(t, http.StatusOK, r.Code, r.Body.String())
				resp := jpath[map[string]any](t, r.json(), "entry", 0, "response")
				assert.Equal(t, "400 Bad Request", resp["status"])
				assert.Contains(t, mustJSON(t, resp["outcome"]), `"Bundle.entry[0].resource`+strings.TrimPrefix(tc.expr, "EpisodeOfCare")+`"`)

				// $validate says the same, as a finding
				r = e.do(http.MethodPost, "EpisodeOfCare/$validate", la, body)
				require.Equal(t, http.StatusOK, r.Code, r.Body.String())
				assert.Contains(t, r.issues(), "INVALID_VALUE@"+tc.expr)

				e.requireNothingStored(t)
			})
		}
	})
}

// TestHazard_BundleWithTwoReadings: a Bundle whose envelope, entry or
// request can be read two ways is refused and changes nothing: Entry beside
// entry, entry twice, and inside an entry a key twice (resource, fullUrl,
// request.url) or spelt with an upper-case letter.
func TestHazard_BundleWithTwoReadings(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		la := e.laToken(la1)
		good := entry{method: "PUT", url: "EpisodeOfCare/p1", resource: planJSON(planSpec{id: "p1", nhs: nhsFirst, la: la1})}.json()
		other := planJSON(planSpec{id: "p1", nhs: nhsSecond, la: la1})
		for _, tc := range []struct{ name, body, expr string }{
			{"Entry-beside-entry",
				`{"resourceType":"Bundle","type":"%s","entry":[` + good + `],"Entry":[` + good + `]}`, "Bundle.Entry"},
			{"entry-twice",
				`{"resourceType":"Bundle","type":"%s","entry":[` + good + `],"entry":[` + good + `]}`, "Bundle.entry"},
			{"resource-twice",
				`{"resourceType":"Bundle","type":"%s","entry":[` + strings.Replace(good, `"resource":`, `"resource":`+other+`,"resource":`, 1) + `]}`,
				"Bundle.entry[0].resource"},
			{"Resource-beside-resource",
				`{"resourceType":"Bundle","type":"%s","entry":[` + strings.Replace(good, `"resource":`, `"Resource":`+other+`,"resource":`, 1) + `]}`,
				"Bundle.entry[0].Resource"},
			{"request-url-twice",
				`{"resourceType":"Bundle","type":"%s","entry":[` + strings.Replace(good, `"url":"EpisodeOfCare/p1"`, `"url":"EpisodeOfCare/p1","url":"EpisodeOfCare/p2"`, 1) + `]}`,
				"Bundle.entry[0].request.url"},
			{"fullUrl-twice",
				`{"resourceType":"Bundle","type":"%s","entry":[` + strings.Replace(good, `{`, `{"fullUrl":"urn:uuid:1","fullUrl":"urn:uuid:2",`, 1) + `]}`,
				"Bundle.entry[0].fullUrl"},
		} {
			for _, typ := range []string{"transaction", "batch"} {
				t.Run(tc.name+"-"+typ, func(t *testing.T) {
					r := e.post(la, strings.Replace(tc.body, "%s", typ, 1))
					if r.Code == http.StatusOK && typ == "batch" {
						resp := jpath[map[string]any](t, r.json(), "entry", 0, "response")
						assert.Equal(t, "400 Bad Request", resp["status"])
						assert.Contains(t, mustJSON(t, resp["outcome"]), `"`+tc.expr+`"`)
					} else {
						requireRefusedAt(t, r, tc.expr)
					}
					e.requireNothingStored(t)
				})
			}
		}
	})
}

// TestHazard_ValidateParametersWithTwoReadings: the Parameters envelope of
// $validate is read with exact keys: a case variant is not Parameters, and
// a duplicate key is refused.
func TestHazard_ValidateParametersWithTwoReadings(t *testing.T) {
	e := newEnv(t, backends()[0])
	la := e.laToken(la1)
	plan := planJSON(planSpec{id: "p1", nhs: nhsFirst, la: la1})
	bad := strings.Replace(plan, `"value":"`+nhsFirst+`"`, `"value":"1234567890"`, 1)

	// ResourceType: not a Parameters resource; reported as the body's own key
	r := e.do(http.MethodPost, "EpisodeOfCare/$validate", la, `{"ResourceType":"Parameters","parameter":[{"name":"resource","resource":`+plan+`}]}`)
	require.Equal(t, http.StatusOK, r.Code, r.Body.String())
	assert.Contains(t, r.issues(), "INVALID_VALUE@ResourceType")

	// a parameter's name twice, or resource twice: refused
	r = e.do(http.MethodPost, "EpisodeOfCare/$validate", la, `{"resourceType":"Parameters","parameter":[{"name":"resource","resource":`+bad+`,"resource":`+plan+`}]}`)
	requireRefusedAt(t, r, "Parameters.parameter[0].resource")
	r = e.do(http.MethodPost, "EpisodeOfCare/$validate", la, `{"resourceType":"Parameters","parameter":[{"name":"mode","Name":"resource","valueCode":"create"}]}`)
	requireRefusedAt(t, r, "Parameters.parameter[0].Name")

	// Parameter (upper-case) is not parameter
	r = e.do(http.MethodPost, "EpisodeOfCare/$validate", la, `{"resourceType":"Parameters","Parameter":[{"name":"resource","resource":`+plan+`}]}`)
	requireRefusedAt(t, r, "Parameters.Parameter")

	// the well-formed request still works
	r = e.do(http.MethodPost, "EpisodeOfCare/$validate", la, `{"resourceType":"Parameters","parameter":[{"name":"resource","resource":`+plan+`},{"name":"mode","valueCode":"create"}]}`)
	require.Equal(t, http.StatusOK, r.Code, r.Body.String())
	assert.Equal(t, "information", jget(t, r.json(), "issue", 0, "severity"), r.Body.String())
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := fhir.Marshal(v)
	require.NoError(t, err)
	return string(b)
}
