package profiles

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/fhir"
)

func catalog(t testing.TB) (*Catalog, *fhir.Codec) {
	t.Helper()
	london, err := time.LoadLocation("Europe/London")
	require.NoError(t, err)
	c, err := Load(london)
	require.NoError(t, err)
	codec, err := fhir.NewCodec()
	require.NoError(t, err)
	return c, codec
}

// check decodes body (which must be valid base R4) and returns the
// profile issues as expression: diagnostics.
func check(t *testing.T, c *Catalog, codec *fhir.Codec, body string, named ...string) []string {
	t.Helper()
	res, base := codec.Decode([]byte(body))
	require.NotNil(t, res)
	require.Empty(t, base, "the test body must be valid base R4")
	var out []string
	for _, is := range c.Validate(res, named...) {
		assert.Equal(t, fhir.KindUnprocessable, is.Kind)
		expr := ""
		if len(is.Expression) > 0 {
			expr = is.Expression[0]
		}
		out = append(out, expr)
	}
	return out
}

const goodPlan = `{"resourceType":"EpisodeOfCare","status":"active",
 "identifier":[{"system":"https://la001.example/plan-id","value":"P-1"}],
 "type":[{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/plan-type","code":"CPP"},{"system":"http://snomed.info/sct","code":"1064311000000109"}]}],
 "patient":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9449306753"}},
 "managingOrganization":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"LA001"}},
 "period":{"start":"2026-01-10","end":"2026-12-31"}}`

const goodOrg = `{"resourceType":"Organization",
 "identifier":[{"system":"https://example.org/other","value":"x"},{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"LA001"}],
 "name":"Local Authority One",
 "contact":[
  {"purpose":{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/la-contact-purpose","code":"office-hours"}]},"telecom":[{"system":"email","value":"a@b.c"},{"system":"phone","value":"0300 123 1000"}]},
  {"purpose":{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/la-contact-purpose","code":"emergency-duty-team"}]},"telecom":[{"system":"phone","value":"0300 123 9999"}]}]}`

func TestValidateEpisodeOfCare(t *testing.T) {
	c, codec := catalog(t)
	cases := []struct {
		name string
		old  string
		new  string
		want []string
	}{
		{"valid", "", "", nil},
		{"snomed-synonym-only", `{"system":"https://fhir.cpis.dev/CodeSystem/plan-type","code":"CPP"},`, "", nil},
		{"claims-its-profile", `"status"`, `"meta":{"profile":["https://fhir.cpis.dev/StructureDefinition/CPIS-EpisodeOfCare|1.0.0"]},"status"`, nil},
		{"claims-the-base", `"status"`, `"meta":{"profile":["http://hl7.org/fhir/StructureDefinition/EpisodeOfCare"]},"status"`, nil},
		{"unknown-profile", `"status"`, `"meta":{"profile":["https://example.org/x"]},"status"`, []string{"EpisodeOfCare.meta.profile[0]"}},
		{"profile-of-another-type", `"status"`, `"meta":{"profile":["https://fhir.cpis.dev/StructureDefinition/CPIS-Flag"]},"status"`, []string{"EpisodeOfCare.meta.profile[0]"}},
		{"no-type", `"type":[{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/plan-type","code":"CPP"},{"system":"http://snomed.info/sct","code":"1064311000000109"}]}],`, "", []string{"EpisodeOfCare.type"}},
		{"two-types", `"type":[`, `"type":[{"text":"x"},`, []string{"EpisodeOfCare.type", "EpisodeOfCare.type[0]"}},
		{"unknown-plan-code", `"code":"CPP"`, `"code":"XYZ"`, []string{"EpisodeOfCare.type[0].coding[0].code"}},
		{"no-plan-coding", `"system":"https://fhir.cpis.dev/CodeSystem/plan-type","code":"CPP"},{"system":"http://snomed.info/sct","code":"1064311000000109"`, `"system":"http://example.org","code":"x"`, []string{"EpisodeOfCare.type[0]"}},
		{"contradicting-codings", `"code":"1064311000000109"`, `"code":"764841000000100"`, []string{"EpisodeOfCare.type[0].coding[1]"}},
		{"bad-nhs-number", "9449306753", "9449306754", []string{"EpisodeOfCare.patient.identifier.value"}},
		{"wrong-patient-system", `"https://fhir.nhs.uk/Id/nhs-number"`, `"https://example.org/mrn"`, []string{"EpisodeOfCare.patient.identifier.system"}},
		{"patient-by-reference", `"patient":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9449306753"}}`, `"patient":{"reference":"Patient/1"}`, []string{"EpisodeOfCare.patient.identifier"}},
		{"bad-ods-code", `"value":"LA001"`, `"value":"la-1"`, []string{"EpisodeOfCare.managingOrganization.identifier.value"}},
		{"no-managing-organization", `"managingOrganization":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"LA001"}},`, "", []string{"EpisodeOfCare.managingOrganization"}},
		{"no-period", `,
 "period":{"start":"2026-01-10","end":"2026-12-31"}`, "", []string{"EpisodeOfCare.period"}},
		{"no-start", `"start":"2026-01-10",`, "", []string{"EpisodeOfCare.period.start"}},
		{"ends-before-it-starts", `"end":"2026-12-31"`, `"end":"2025-12-31"`, []string{"EpisodeOfCare.period.end"}},
		{"ends-on-the-day-it-starts", `"end":"2026-12-31"`, `"end":"2026-01-10"`, nil},
		{"identifier-without-value", `"value":"P-1"`, `"use":"official"`, []string{"EpisodeOfCare.identifier[0].value"}},
		{"contained", `"status"`, `"contained":[{"resourceType":"Patient","id":"p"}],"status"`, []string{"EpisodeOfCare.contained"}},
		{"script", `"status"`, `"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\"javascript:x()\">x</a></div>"},"status"`, []string{"EpisodeOfCare.text.div"}},
		{"event-handler", `"status"`, `"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p onclick = \"x()\">x</p></div>"},"status"`, []string{"EpisodeOfCare.text.div"}},
		{"plain-narrative", `"status"`, `"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Child protection plan, one of the plans</p></div>"},"status"`, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := goodPlan
			if tc.old != "" {
				require.Contains(t, body, tc.old)
				body = strings.Replace(body, tc.old, tc.new, 1)
			}
			assert.Equal(t, tc.want, check(t, c, codec, body))
		})
	}
	t.Run("every-problem-in-element-order", func(t *testing.T) {
		body := strings.NewReplacer(`"code":"CPP"`, `"code":"XYZ"`, "9449306753", "123", `"value":"LA001"`, `"value":"x"`,
			`"end":"2026-12-31"`, `"end":"2025-01-01"`).Replace(goodPlan)
		assert.Equal(t, []string{"EpisodeOfCare.type[0].coding[0].code", "EpisodeOfCare.patient.identifier.value",
			"EpisodeOfCare.managingOrganization.identifier.value", "EpisodeOfCare.period.end"}, check(t, c, codec, body))
	})
}

// Validate takes untrusted JSON: whatever the codec lets through, it
// never panics, and every issue it reports points into the resource.
func FuzzValidate(f *testing.F) {
	for _, seed := range []string{goodPlan, goodOrg, goodCareTeam, `{"resourceType":"Flag","extension":[{"url":1},{"valueString":[]}],"category":"x"}`,
		`{"resourceType":"Organization","identifier":{"system":3},"contact":[null,{"purpose":[]},{"telecom":{}}]}`,
		`{"resourceType":"EpisodeOfCare","type":[{"coding":{"code":"CPP"}}],"period":"2026","text":{"div":7},"meta":{"profile":[5]}}`} {
		f.Add(seed)
	}
	c, codec := catalog(f)
	f.Fuzz(func(t *testing.T, body string) {
		res, _ := codec.Decode([]byte(body))
		if res == nil {
			return
		}
		for _, is := range c.Validate(res, "https://example.org/p") {
			for _, e := range is.Expression {
				if !strings.HasPrefix(e, res.Type+".") {
					t.Errorf("issue %q points outside the %s: %s", e, res.Type, is.Diagnostics)
				}
			}
		}
	})
}

func TestValidateOrganization(t *testing.T) {
	c, codec := catalog(t)
	edt := `,
  {"purpose":{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/la-contact-purpose","code":"emergency-duty-team"}]},"telecom":[{"system":"phone","value":"0300 123 9999"}]}`
	cases := []struct {
		name, old, new string
		want           []string
	}{
		{"valid", "", "", nil},
		{"no-ods-code", `{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"LA001"}`, `{"system":"https://example.org/y","value":"y"}`, []string{"Organization.identifier"}},
		{"two-ods-codes", `"identifier":[`, `"identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"LA009"},`, []string{"Organization.identifier"}},
		{"bad-ods-code", `"value":"LA001"`, `"value":"L"`, []string{"Organization.identifier[1].value"}},
		{"no-name", `"name":"Local Authority One",`, "", []string{"Organization.name"}},
		{"no-emergency-contact", edt, "", []string{"Organization.contact"}},
		{"two-office-hours-contacts", "emergency-duty-team", "office-hours", []string{"Organization.contact", "Organization.contact"}},
		{"unknown-purpose", `"code":"emergency-duty-team"`, `"code":"weekends"`, []string{"Organization.contact", "Organization.contact[1].purpose.coding[0].code"}},
		{"purpose-from-elsewhere", `{"system":"https://fhir.cpis.dev/CodeSystem/la-contact-purpose","code":"emergency-duty-team"}`, `{"system":"http://terminology.hl7.org/CodeSystem/contactentity-type","code":"ADMIN"}`, []string{"Organization.contact", "Organization.contact[1].purpose"}},
		{"contact-without-phone", `"telecom":[{"system":"phone","value":"0300 123 9999"}]`, `"telecom":[{"system":"email","value":"edt@la.example"}]`, []string{"Organization.contact[1].telecom"}},
		{"extra-contact-without-purpose", edt, edt + `,{"telecom":[{"system":"phone","value":"1"}]}`, []string{"Organization.contact[2].purpose"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := goodOrg
			if tc.old != "" {
				require.Contains(t, body, tc.old)
				body = strings.Replace(body, tc.old, tc.new, 1)
			}
			assert.Equal(t, tc.want, check(t, c, codec, body))
		})
	}
}

// What the server itself serves conforms to its profiles: a derived Flag
// (active and ended) and an AuditEvent for users and systems.
func TestServedResourcesConform(t *testing.T) {
	c, codec := catalog(t)
	res, _ := codec.Decode([]byte(goodPlan))
	require.Empty(t, c.Validate(res))
	plan := ParsePlan(res, c.loc)
	plan.ID = "p1"
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	f := Flag(plan, 1, now, "Local Authority One", now)
	ended := FlagAt(f.Body, f.Ends, f.Ends.Add(time.Second))
	for name, body := range map[string][]byte{"flag-active": f.Body, "flag-ended": ended} {
		t.Run(name, func(t *testing.T) {
			assert.Empty(t, check(t, c, codec, string(body)))
			assert.Contains(t, string(body), FlagProfile)
		})
	}
	for _, system := range []bool{false, true} {
		a := AuditEvent(Access{ID: "a1", Recorded: now, Interaction: "search-type", Query: "Flag?x", NHSNumber: "9449306753",
			Results: 1, System: system, UserName: "Dr Jane Smith", UserID: "555021935107", RoleID: "r", RoleName: "Nurse",
			OrgCode: "RBA", OrgName: "Somerset"})
		assert.Empty(t, check(t, c, codec, string(a)), "system=%v", system)
		assert.Contains(t, string(a), AuditEventProfile)
	}
	t.Run("a-flag-with-a-bad-subject-fails", func(t *testing.T) {
		body := strings.Replace(string(f.Body), "9449306753", "9449306754", 1)
		assert.Equal(t, []string{"Flag.subject.identifier.value"}, check(t, c, codec, body))
		body = strings.Replace(string(f.Body), "CP-IS", "OTHER", 1)
		assert.Equal(t, []string{"Flag.category[0]"}, check(t, c, codec, body))
	})
}

func TestValidateNamedProfile(t *testing.T) {
	c, codec := catalog(t)
	assert.Empty(t, check(t, c, codec, goodPlan, EpisodeOfCareProfile))
	assert.Equal(t, []string{""}, check(t, c, codec, goodPlan, "https://example.org/unknown"))
	assert.Equal(t, []string{""}, check(t, c, codec, goodPlan, OrganizationProfile))
}

func TestCatalogSearch(t *testing.T) {
	c, _ := catalog(t)
	assert.Len(t, c.Search("StructureDefinition", ""), 7)
	assert.Len(t, c.Search("ValueSet", "https://fhir.cpis.dev/ValueSet/plan-type"), 1)
	assert.Len(t, c.Search("ValueSet", "https://fhir.cpis.dev/ValueSet/plan-type|1.0.0"), 1)
	assert.Empty(t, c.Search("ValueSet", "https://fhir.cpis.dev/ValueSet/plan-type|2"))
	a, ok := c.Artifact("CodeSystem", "plan-type")
	require.True(t, ok)
	assert.Equal(t, PlanTypeSystem, a.URL)
	assert.Equal(t, EpisodeOfCareProfile, c.ProfileOf("EpisodeOfCare"))
	for _, typ := range []string{"Flag", "Organization", "AuditEvent", "CareTeam", "PractitionerRole"} {
		assert.Equal(t, Base+"/StructureDefinition/CPIS-"+typ, c.ProfileOf(typ))
	}
	assert.Empty(t, c.ProfileOf("Patient"))
}

// A profile naming a rule the server does not implement, or binding to a
// value set it does not hold, is refused at load.
func TestLoadRefusesWhatItCannotApply(t *testing.T) {
	c, _ := catalog(t)
	p := &profile{url: "x", root: &element{id: "X", children: []*element{{id: "X.a", rules: []string{"cpis-nope-1"}}}}}
	assert.ErrorContains(t, c.check(p), "cpis-nope-1")
	p = &profile{url: "x", root: &element{id: "X", binding: Base + "/ValueSet/nope"}}
	assert.ErrorContains(t, c.check(p), "unknown value set")
}

// A CareTeam as the server derives it, for the profile's negative cases.
const goodCareTeam = `{"resourceType":"CareTeam","id":"p1","status":"active",
 "category":[{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/plan-type","code":"CPP"},{"system":"http://snomed.info/sct","code":"1064311000000109"}]}],
 "name":"Local Authority One",
 "subject":{"type":"Patient","identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9449306753"}},
 "period":{"start":"2026-01-10","end":"2026-12-31"},
 "managingOrganization":[{"type":"Organization","identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"LA001"},"display":"Local Authority One"}],
 "telecom":[
  {"extension":[{"url":"https://fhir.cpis.dev/StructureDefinition/la-contact-purpose","valueCoding":{"system":"https://fhir.cpis.dev/CodeSystem/la-contact-purpose","code":"office-hours"}}],"system":"phone","value":"0300 123 1000","use":"work","rank":1},
  {"extension":[{"url":"https://fhir.cpis.dev/StructureDefinition/la-contact-purpose","valueCoding":{"system":"https://fhir.cpis.dev/CodeSystem/la-contact-purpose","code":"emergency-duty-team"}}],"system":"phone","value":"0300 123 9999","use":"work","rank":2}]}`

func TestValidateCareTeam(t *testing.T) {
	c, codec := catalog(t)
	cases := []struct {
		name, old, new string
		want           []string
	}{
		{"valid", "", "", nil},
		{"unknown-plan-code", `"code":"CPP"`, `"code":"XYZ"`, []string{"CareTeam.category[0].coding[0].code"}},
		{"contradicting-codings", `"code":"1064311000000109"`, `"code":"764841000000100"`, []string{"CareTeam.category[0].coding[1]"}},
		{"no-category", `"category":[{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/plan-type","code":"CPP"},{"system":"http://snomed.info/sct","code":"1064311000000109"}]}],`, "", []string{"CareTeam.category"}},
		{"bad-nhs-number", "9449306753", "9449306754", []string{"CareTeam.subject.identifier.value"}},
		{"subject-by-reference", `"subject":{"type":"Patient","identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9449306753"}}`, `"subject":{"reference":"Patient/1"}`, []string{"CareTeam.subject.type", "CareTeam.subject.identifier"}},
		{"no-period-start", `"start":"2026-01-10",`, "", []string{"CareTeam.period.start"}},
		{"ends-before-it-starts", `"end":"2026-12-31"`, `"end":"2025-12-31"`, []string{"CareTeam.period.end"}},
		{"bad-ods-code", `"value":"LA001"`, `"value":"la-1"`, []string{"CareTeam.managingOrganization[0].identifier.value"}},
		{"no-managing-organization", `"managingOrganization":[{"type":"Organization","identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"LA001"},"display":"Local Authority One"}],`, "", []string{"CareTeam.managingOrganization"}},
		{"ranks-swapped", `"code":"office-hours"}}],"system":"phone","value":"0300 123 1000","use":"work","rank":1`, `"code":"office-hours"}}],"system":"phone","value":"0300 123 1000","use":"work","rank":2`, []string{"CareTeam.telecom", "CareTeam.telecom[0]"}},
		{"purpose-contradicts-rank", `"code":"emergency-duty-team"`, `"code":"office-hours"`, []string{"CareTeam.telecom[1]"}},
		{"unknown-purpose", `"code":"emergency-duty-team"`, `"code":"weekends"`, []string{"CareTeam.telecom[1]", "CareTeam.telecom[1].extension[0].valueCoding.code"}},
		{"no-purpose", `{"extension":[{"url":"https://fhir.cpis.dev/StructureDefinition/la-contact-purpose","valueCoding":{"system":"https://fhir.cpis.dev/CodeSystem/la-contact-purpose","code":"office-hours"}}],`, `{`, []string{"CareTeam.telecom[0]", "CareTeam.telecom[0].extension"}},
		{"not-a-phone", `"system":"phone","value":"0300 123 9999"`, `"system":"email","value":"edt@la.example"`, []string{"CareTeam.telecom[1].system"}},
		{"no-rank", `,"rank":2`, ``, []string{"CareTeam.telecom[1].rank"}},
		{"three-numbers", `"rank":2}]`, `"rank":2},{"extension":[{"url":"https://fhir.cpis.dev/StructureDefinition/la-contact-purpose","valueCoding":{"system":"https://fhir.cpis.dev/CodeSystem/la-contact-purpose","code":"office-hours"}}],"system":"phone","value":"1","rank":3}]`, []string{"CareTeam.telecom"}},
		{"no-telecom", goodCareTeam[strings.Index(goodCareTeam, `,
 "telecom"`) : len(goodCareTeam)-1], "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := goodCareTeam
			if tc.old != "" {
				require.Contains(t, body, tc.old)
				body = strings.Replace(body, tc.old, tc.new, 1)
			}
			assert.Equal(t, tc.want, check(t, c, codec, body))
		})
	}
}

func TestValidatePractitionerRole(t *testing.T) {
	c, codec := catalog(t)
	_, good := PractitionerRoleFor(Access{UserName: "Dr Jane Smith", UserID: "555021935107", RoleID: "555021936109",
		RoleName: "Nurse", RoleCode: "S8000:G8000:R8001", OrgCode: "RBA", OrgName: "Somerset"})
	cases := []struct {
		name, old, new string
		want           []string
	}{
		{"valid", "", "", nil},
		{"practitioner-without-sds-user-id", `"https://fhir.nhs.uk/Id/sds-user-id"`, `"https://example.org/staff"`, []string{"PractitionerRole.practitioner.identifier.system"}},
		{"organisation-without-ods-code", `"https://fhir.nhs.uk/Id/ods-organization-code"`, `"https://example.org/org"`, []string{"PractitionerRole.organization.identifier.system"}},
		{"no-practitioner", `"practitioner":{"type":"Practitioner","identifier":{"system":"https://fhir.nhs.uk/Id/sds-user-id","value":"555021935107"},"display":"Dr Jane Smith"},`, "", []string{"PractitionerRole.practitioner"}},
		{"role-id-from-elsewhere", `"https://fhir.nhs.uk/Id/sds-role-profile-id"`, `"https://example.org/role"`, []string{"PractitionerRole.identifier[0].system"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := string(good)
			if tc.old != "" {
				require.Contains(t, body, tc.old)
				body = strings.Replace(body, tc.old, tc.new, 1)
			}
			assert.Equal(t, tc.want, check(t, c, codec, body))
		})
	}
}
