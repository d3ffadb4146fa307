package quality

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/fhir"
	"cpis/profiles"
)

// stamped runs body through the write path's reading (google/fhir, the
// CP-IS profile) and returns the body the store would keep, and the tree.
func stamped(t *testing.T, cat *profiles.Catalog, body string, updated time.Time) (*fhir.Resource, []byte) {
	t.Helper()
	codec, err := fhir.NewCodec()
	require.NoError(t, err)
	res, issues := codec.Decode([]byte(body))
	require.NotNil(t, res, "%v", issues)
	require.Empty(t, issues)
	require.Empty(t, cat.Validate(res))
	res.Stamp(3, updated, cat.ProfileOf(res.Type))
	return res, res.Encode()
}

// Facts read from a stored plan are the plan the write path parsed: the
// SNOMED synonym is the plan type, dates are London days, the end is the
// first instant after the plan, identifiers are system|value.
func TestParsePlanFacts_StoredBody(t *testing.T) {
	london, err := time.LoadLocation("Europe/London")
	require.NoError(t, err)
	cat, err := profiles.Load(london)
	require.NoError(t, err)
	updated := time.Date(2026, 7, 1, 9, 0, 0, 0, time.UTC)
	res, body := stamped(t, cat, `{"resourceType":"EpisodeOfCare","id":"p1",
	 "identifier":[{"system":"https://la001.example/plan-id","value":"LAC-0002"}],
	 "status":"active",
	 "type":[{"coding":[{"system":"http://snomed.info/sct","code":"764841000000100"}]}],
	 "patient":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9449306761"}},
	 "managingOrganization":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"LA001"}},
	 "period":{"start":"2026-06-01","end":"2027-08-31"}}`, updated)

	got, err := ParsePlanFacts(body, updated, london)
	require.NoError(t, err)
	assert.Equal(t, PlanFacts{ID: "p1", NHSNumber: "9449306761", Type: profiles.LAC, Status: "active",
		Start: time.Date(2026, 5, 31, 23, 0, 0, 0, time.UTC), End: time.Date(2027, 8, 31, 23, 0, 0, 0, time.UTC), // midnight BST ending 31 August
		Updated: updated, Identifiers: []string{"https://la001.example/plan-id|LAC-0002"}}, normal(got))
	assert.Equal(t, normal(PlanFactsOf(profiles.ParsePlan(res, london), updated)), normal(got))

	_, err = ParsePlanFacts([]byte(`{"resourceType":"Organization","id":"x"}`), updated, london)
	assert.Error(t, err)
	_, err = ParsePlanFacts([]byte(`{"resourceType":`), updated, london)
	assert.Error(t, err)
}

// normal puts times in UTC so equal instants compare equal.
func normal(p PlanFacts) PlanFacts {
	p.Start, p.End, p.Updated = p.Start.UTC(), p.End.UTC(), p.Updated.UTC()
	return p
}

// The Organization's numbers are read by contact purpose, phones only.
func TestParseOrgFacts_StoredBody(t *testing.T) {
	cat, err := profiles.Load(time.UTC)
	require.NoError(t, err)
	updated := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	_, body := stamped(t, cat, `{"resourceType":"Organization","id":"la001",
	 "identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"LA001"}],
	 "name":"Local Authority 001",
	 "contact":[
	  {"purpose":{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/la-contact-purpose","code":"office-hours"}]},
	   "telecom":[{"system":"phone","value":"0300 123 1000"},{"system":"email","value":"duty@la001.example"}]},
	  {"purpose":{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/la-contact-purpose","code":"emergency-duty-team"}]},
	   "telecom":[{"system":"phone","value":"+44 300 123 1000"}]}]}`, updated)
	org, err := ParseOrgFacts(body, updated)
	require.NoError(t, err)
	assert.Equal(t, &OrgFacts{ID: "la001", Updated: updated, OfficeHours: []string{"0300 123 1000"}, EmergencyDuty: []string{"+44 300 123 1000"}}, org)
	assert.Equal(t, []Rule{OrganizationStale, ContactNumbersIdentical}, rulesOf(Report(now, DefaultThresholds(), nil, org)))
}

// The struct decoding of ParsePlanFacts reads every plan shape as the write
// path's profiles.ParsePlan does.
func TestParsePlanFacts_SameAsParsePlan(t *testing.T) {
	london, err := time.LoadLocation("Europe/London")
	require.NoError(t, err)
	cat, err := profiles.Load(london)
	require.NoError(t, err)
	updated := time.Date(2026, 7, 1, 9, 0, 0, 0, time.UTC)
	const head = `{"resourceType":"EpisodeOfCare","id":"p1",`
	const tail = `"patient":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9449306761"}},
	 "managingOrganization":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"LA001"},"display":"LA One"},`
	for name, body := range map[string]string{
		"ucpp-open":        head + `"status":"active","type":[{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/plan-type","code":"UCPP"}]}],` + tail + `"period":{"start":"2026-01-10"}}`,
		"two-identifiers":  head + `"identifier":[{"system":"https://la001.example/a","value":"1"},{"use":"secondary","system":"https://la001.example/b","value":"2"}],"status":"finished","type":[{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/plan-type","code":"CPP"}]}],` + tail + `"period":{"start":"2026-01-10","end":"2026-03-01"}}`,
		"start-with-time":  head + `"status":"entered-in-error","type":[{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/plan-type","code":"LAC"}]}],` + tail + `"period":{"start":"2026-03-29T00:30:00+00:00"}}`,
		"snomed-and-local": head + `"status":"active","type":[{"coding":[{"system":"http://snomed.info/sct","code":"764841000000100"},{"system":"https://fhir.cpis.dev/CodeSystem/plan-type","code":"LAC"}]}],` + tail + `"period":{"start":"2026-10-25","end":"2026-10-25"}}`,
	} {
		t.Run(name, func(t *testing.T) {
			res, stored := stamped(t, cat, body, updated)
			got, err := ParsePlanFacts(stored, updated, london)
			require.NoError(t, err)
			assert.Equal(t, normal(PlanFactsOf(profiles.ParsePlan(res, london), updated)), normal(got))
		})
	}
}
