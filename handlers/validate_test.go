package handlers_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/profiles"
)

// parameters wraps a resource in a $validate Parameters resource.
func parameters(resource string, more ...string) string {
	p := `{"resourceType":"Parameters","parameter":[{"name":"resource","resource":` + resource + `}`
	for _, m := range more {
		p += "," + m
	}
	return p + "]}"
}

// severities returns each issue's severity.
func (r resp) severities() []string {
	var out []string
	for _, is := range jpath[[]any](r.t, r.json(), "issue") {
		out = append(out, jpath[string](r.t, is, "severity"))
	}
	return out
}

func TestValidateOperation(t *testing.T) {
	e := newEnv(t, backends()[0])
	la := e.laToken(la1)
	good := planJSON(planSpec{id: "p1", nhs: nhsA, la: la1})
	bad := strings.Replace(planJSON(planSpec{id: "p1", nhs: "9449306754", la: la1, planType: "XYZ"}), `"start":"2026-01-10"`, `"end":"2026-01-10"`, 1)
	badIssues := []string{"VALIDATION_ERROR@EpisodeOfCare.type[0].coding[0].code", "VALIDATION_ERROR@EpisodeOfCare.patient.identifier.value", "VALIDATION_ERROR@EpisodeOfCare.period.start"}
	valid := []string{"@"}
	cases := []struct {
		name, path, token, body string
		status                  int
		issues                  []string
	}{
		{"valid-200", "EpisodeOfCare/$validate", la, good, 200, valid},
		{"valid-in-parameters-200", "EpisodeOfCare/$validate", la, parameters(good), 200, valid},
		{"valid-for-a-nurse-200", "EpisodeOfCare/$validate", e.nurse(), good, 200, valid},
		{"valid-for-a-gp-200", "EpisodeOfCare/$validate", e.gp(), good, 200, valid},
		{"valid-for-a-user-without-activities-200", "EpisodeOfCare/$validate", e.userToken(), good, 200, valid},
		{"every-problem-200", "EpisodeOfCare/$validate", la, bad, 200, badIssues},
		{"every-problem-in-parameters-200", "EpisodeOfCare/$validate", la, parameters(bad), 200, badIssues},
		{"unknown-claimed-profile-200", "EpisodeOfCare/$validate", la,
			strings.Replace(good, `"status"`, `"meta":{"profile":["https://example.org/x"]},"status"`, 1), 200,
			[]string{"VALIDATION_ERROR@EpisodeOfCare.meta.profile[0]"}},
		{"unknown-named-profile-200", "EpisodeOfCare/$validate", la,
			parameters(good, `{"name":"profile","valueUri":"https://example.org/x"}`), 200, []string{"VALIDATION_ERROR@"}},
		{"named-profile-of-another-type-200", "EpisodeOfCare/$validate", la,
			parameters(good, `{"name":"profile","valueCanonical":"`+profiles.FlagProfile+`"}`), 200, []string{"VALIDATION_ERROR@"}},
		{"named-own-profile-200", "EpisodeOfCare/$validate", la,
			parameters(good, `{"name":"profile","valueUri":"`+profiles.EpisodeOfCareProfile+`"}`, `{"name":"mode","valueCode":"create"}`), 200, valid},
		{"unknown-element-200", "EpisodeOfCare/$validate", la, strings.Replace(good, `"status"`, `"colour":"red","status"`, 1), 200,
			[]string{"INVALID_VALUE@EpisodeOfCare.colour"}},
		{"wrong-type-200", "EpisodeOfCare/$validate", la, orgJSON("o", la1, "LA"), 200, []string{"INVALID_VALUE@resourceType"}},
		{"not-json-200", "EpisodeOfCare/$validate", la, `{"resourceType":`, 200, []string{"INVALID_VALUE@"}},
		{"organization-200", "Organization/$validate", la, orgJSON("o", la1, "LA"), 200, valid},
		{"organization-without-contacts-200", "Organization/$validate", la,
			`{"resourceType":"Organization","identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"LA001"}],"name":"x"}`, 200,
			[]string{"VALIDATION_ERROR@Organization.contact", "VALIDATION_ERROR@Organization.contact"}},
		{"flag-is-validated-not-refused-200", "Flag/$validate", la, `{"resourceType":"Flag","status":"active","code":{"text":"x"},"subject":{"reference":"Patient/1"}}`, 200,
			[]string{"VALIDATION_ERROR@Flag.extension", "VALIDATION_ERROR@Flag.category", "VALIDATION_ERROR@Flag.code",
				"VALIDATION_ERROR@Flag.subject.type", "VALIDATION_ERROR@Flag.subject.identifier", "VALIDATION_ERROR@Flag.period", "VALIDATION_ERROR@Flag.author"}},
		{"update-needs-the-id-200", "EpisodeOfCare/p2/$validate", la, good, 200, []string{"INVALID_VALUE@EpisodeOfCare.id"}},
		{"update-mode-without-id-200", "EpisodeOfCare/$validate", la,
			parameters(planJSON(planSpec{nhs: nhsA, la: la1}), `{"name":"mode","valueCode":"update"}`), 200, []string{"INVALID_VALUE@EpisodeOfCare.id"}},
		{"parameters-without-resource-400", "EpisodeOfCare/$validate", la, `{"resourceType":"Parameters","parameter":[{"name":"mode","valueCode":"create"}]}`, 400,
			[]string{"INVALID_VALUE@Parameters.parameter"}},
		{"two-resources-400", "EpisodeOfCare/$validate", la, parameters(good, `{"name":"resource","resource":`+good+`}`), 400,
			[]string{"INVALID_VALUE@Parameters.parameter[1]"}},
		{"mode-delete-400", "EpisodeOfCare/p1/$validate", la, parameters(good, `{"name":"mode","valueCode":"delete"}`), 400,
			[]string{"INVALID_VALUE@Parameters.parameter[1].valueCode"}},
		{"unknown-parameter-400", "EpisodeOfCare/$validate", la, parameters(good, `{"name":"colour","valueString":"red"}`), 400,
			[]string{"INVALID_VALUE@Parameters.parameter[1]"}},
		{"no-token-401", "EpisodeOfCare/$validate", "", good, 401, []string{"UNAUTHORISED@"}},
		{"bad-id-400", "EpisodeOfCare/a$b/$validate", la, good, 400, []string{"INVALID_VALUE@id"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(http.MethodPost, tc.path, tc.token, tc.body)
			require.Equal(t, tc.status, r.Code, r.Body.String())
			assert.Equal(t, tc.issues, r.issues(), r.Body.String())
			if tc.status == 200 && len(tc.issues) == 1 && tc.issues[0] == "@" {
				assert.Equal(t, []string{"information"}, r.severities())
			}
		})
	}
	t.Run("writes-nothing", func(t *testing.T) {
		r := e.do(http.MethodGet, "EpisodeOfCare/p1", la, "")
		assert.Equal(t, http.StatusNotFound, r.Code)
		r = e.do(http.MethodGet, flagSearch(nhsA), e.nurse(), "")
		assert.Equal(t, 0, r.total())
	})
	t.Run("same-verdict-as-a-write", func(t *testing.T) {
		v := e.do(http.MethodPost, "EpisodeOfCare/$validate", la, bad)
		w := e.do(http.MethodPut, "EpisodeOfCare/p1", la, bad)
		require.Equal(t, http.StatusUnprocessableEntity, w.Code)
		assert.Equal(t, w.json()["issue"], v.json()["issue"], "$validate and PUT report the same issues")
	})
}

// $validate on an id never reads the stored resource: the answer for a
// plan another local authority manages is the answer for one that does
// not exist, and it writes no access record.
func TestValidateInstanceDisclosesNothing(t *testing.T) {
	e := newEnv(t, backends()[0])
	e.putPlan(planSpec{id: "theirs", nhs: nhsB, la: la2})
	la := e.laToken(la1)
	for _, body := range []func(id string) string{
		func(id string) string { return planJSON(planSpec{id: id, nhs: nhsA, la: la1}) },
		func(id string) string { return planJSON(planSpec{id: id, nhs: "123", la: la1}) },
		func(id string) string { return planJSON(planSpec{id: id, nhs: nhsA, la: la2}) },
	} {
		theirs := e.do(http.MethodPost, "EpisodeOfCare/theirs/$validate", la, body("theirs"))
		ghost := e.do(http.MethodPost, "EpisodeOfCare/ghost0/$validate", la, body("ghost0"))
		require.Equal(t, http.StatusOK, theirs.Code)
		assert.Equal(t, ghost.Code, theirs.Code)
		assert.Equal(t, strings.ReplaceAll(ghost.Body.String(), "ghost0", "theirs"), theirs.Body.String())
		assert.NotContains(t, theirs.Body.String(), nhsB)
	}
	r := e.do(http.MethodGet, "AuditEvent?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|"+nhsB, e.laToken(la2), "")
	require.Equal(t, http.StatusOK, r.Code)
	assert.Empty(t, r.entries("match"), "validating touched no patient's record")
	e.do(http.MethodGet, "EpisodeOfCare/theirs", e.nurse(), "")
	r = e.do(http.MethodGet, "AuditEvent?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|"+nhsB, e.laToken(la2), "")
	assert.Len(t, r.entries("match"), 1, "while a read is audited")
}

func TestConformanceResources(t *testing.T) {
	e := newEnv(t, backends()[0])
	tokens := map[string]string{"la": e.laToken(la1), "nurse": e.nurse(), "gp": e.gp(), "no-activities": e.userToken()}
	for who, tok := range tokens {
		t.Run("read-as-"+who, func(t *testing.T) {
			for _, p := range []string{"StructureDefinition/CPIS-EpisodeOfCare", "StructureDefinition/CPIS-Flag", "StructureDefinition/CPIS-Organization",
				"StructureDefinition/CPIS-AuditEvent", "StructureDefinition/CPIS-CareTeam", "StructureDefinition/CPIS-PractitionerRole",
				"StructureDefinition/la-contact-purpose", "CodeSystem/plan-type", "CodeSystem/la-contact-purpose", "CodeSystem/data-quality-rule",
				"ValueSet/plan-type", "ValueSet/la-contact-purpose"} {
				r := e.do(http.MethodGet, p, tok, "")
				require.Equal(t, http.StatusOK, r.Code, r.Body.String())
				m := r.json()
				assert.Equal(t, strings.Split(p, "/")[0], m["resourceType"])
				assert.Equal(t, "https://fhir.cpis.dev/"+p, m["url"])
			}
		})
	}
	la := tokens["la"]
	cases := []struct {
		name, path, token string
		status, total     int
		ids               []string
	}{
		{"search-all-profiles-200", "StructureDefinition", la, 200, 7, []string{"CPIS-AuditEvent", "CPIS-CareTeam", "CPIS-EpisodeOfCare", "CPIS-Flag", "CPIS-Organization", "CPIS-PractitionerRole", "la-contact-purpose"}},
		{"search-by-url-200", "StructureDefinition?url=" + url.QueryEscape(profiles.FlagProfile), tokens["gp"], 200, 1, []string{"CPIS-Flag"}},
		{"search-by-url-and-version-200", "ValueSet?url=https://fhir.cpis.dev/ValueSet/plan-type|1.0.0", la, 200, 1, []string{"plan-type"}},
		{"search-by-unknown-url-200", "CodeSystem?url=https://example.org/cs", la, 200, 0, nil},
		{"search-codesystems-200", "CodeSystem", tokens["nurse"], 200, 3, []string{"data-quality-rule", "la-contact-purpose", "plan-type"}},
		{"search-by-id-200", "ValueSet?_id=la-contact-purpose", la, 200, 1, []string{"la-contact-purpose"}},
		{"count-only-200", "StructureDefinition?_summary=count", la, 200, 7, nil},
		{"unknown-id-404", "StructureDefinition/Patient", la, 404, 0, nil},
		{"no-token-401", "StructureDefinition", "", 401, 0, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(http.MethodGet, tc.path, tc.token, "")
			require.Equal(t, tc.status, r.Code, r.Body.String())
			if tc.status != 200 {
				return
			}
			assert.Equal(t, tc.total, r.total())
			var ids []string
			for _, m := range r.entries("match") {
				ids = append(ids, jpath[string](t, m, "id"))
			}
			assert.Equal(t, tc.ids, ids)
		})
	}
	t.Run("paged", func(t *testing.T) {
		r := e.do(http.MethodGet, "StructureDefinition?_count=6", la, "")
		require.Equal(t, http.StatusOK, r.Code)
		assert.Len(t, r.entries("match"), 6)
		next := r.link("next")
		require.NotEmpty(t, next)
		r = e.do(http.MethodGet, next, la, "")
		require.Equal(t, http.StatusOK, r.Code)
		require.Len(t, r.entries("match"), 1)
		assert.Equal(t, "la-contact-purpose", r.entries("match")[0]["id"])
		assert.Empty(t, r.link("next"))
	})
	t.Run("unknown-parameter-strict-400", func(t *testing.T) {
		r := e.do(http.MethodGet, "StructureDefinition?name=x", la, "", "Prefer", "handling=strict")
		assert.Equal(t, http.StatusBadRequest, r.Code)
		r = e.do(http.MethodGet, "StructureDefinition?name=x", la, "")
		require.Equal(t, http.StatusOK, r.Code)
		assert.Len(t, r.entries("outcome"), 1, "the ignored parameter is reported")
	})
}

// Every CP-IS resource the server returns names its profile in
// meta.profile, and passes $validate against it.
func TestServedResourcesClaimAndMeetTheirProfiles(t *testing.T) {
	e := newEnv(t, backends()[0])
	la := e.laToken(la1)
	e.putOrg("org1", la1, "Local Authority One")
	e.putPlan(planSpec{id: "p1", nhs: nhsA, la: la1, end: "2026-12-31"})
	e.do(http.MethodGet, flagSearch(nhsA), e.nurse(), "") // audited

	served := map[string]map[string]any{}
	r := e.do(http.MethodGet, flagSearch(nhsA)+"&_include=Flag:author", e.nurse(), "")
	require.Equal(t, http.StatusOK, r.Code)
	served["Flag"] = r.entries("match")[0]
	served["Organization"] = r.entries("include")[0]
	r = e.do(http.MethodGet, "EpisodeOfCare/p1", la, "")
	require.Equal(t, http.StatusOK, r.Code)
	served["EpisodeOfCare"] = r.json()
	r = e.do(http.MethodGet, "AuditEvent?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|"+nhsA, la, "")
	require.Equal(t, http.StatusOK, r.Code)
	require.NotEmpty(t, r.entries("match"))
	served["AuditEvent"] = r.entries("match")[0]

	want := map[string]string{"Flag": profiles.FlagProfile, "Organization": profiles.OrganizationProfile,
		"EpisodeOfCare": profiles.EpisodeOfCareProfile, "AuditEvent": profiles.AuditEventProfile}
	for typ, res := range served {
		t.Run(typ, func(t *testing.T) {
			assert.Equal(t, []any{want[typ]}, jget(t, res, "meta", "profile"))
			b, err := json.Marshal(res)
			require.NoError(t, err)
			v := e.do(http.MethodPost, typ+"/$validate", la, string(b))
			require.Equal(t, http.StatusOK, v.Code)
			assert.Equal(t, []string{"information"}, v.severities(), v.Body.String())
		})
	}
}
