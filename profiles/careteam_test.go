package profiles_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/fhir"
	"cpis/profiles"
)

const laOrganization = `{"resourceType":"Organization","id":"la001",
 "identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"LA001"}],
 "name":"Local Authority One",
 "contact":[
  {"purpose":{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/la-contact-purpose","code":"emergency-duty-team"}]},"telecom":[{"system":"phone","value":"0300 123 9999"}]},
  {"purpose":{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/la-contact-purpose","code":"office-hours"}]},"telecom":[{"system":"email","value":"a@b.c"},{"system":"phone","value":"0300 123 1000"}]}]}`

func planOf(t *testing.T, codec *fhir.Codec, loc *time.Location, status, code, laDisplay, end string) *profiles.Plan {
	t.Helper()
	per := `{"start":"2026-01-01"}`
	if end != "" {
		per = fmt.Sprintf(`{"start":"2026-01-01","end":%q}`, end)
	}
	body := fmt.Sprintf(`{"resourceType":"EpisodeOfCare","id":"p1","status":%q,
	 "type":[{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/plan-type","code":%q}]}],
	 "patient":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9449306753"}},
	 "managingOrganization":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"LA001"},"display":%q},
	 "period":%s}`, status, code, laDisplay, per)
	res, issues := codec.Decode([]byte(body))
	require.Empty(t, issues)
	return profiles.ParsePlan(res, loc)
}

type renderedCareTeam struct {
	Status   string `json:"status"`
	Name     string `json:"name"`
	Category []struct {
		Coding []fhir.Coding `json:"coding"`
	} `json:"category"`
	Subject              fhir.Reference   `json:"subject"`
	Period               fhir.Period      `json:"period"`
	ManagingOrganization []fhir.Reference `json:"managingOrganization"`
	Telecom              []struct {
		Extension []struct {
			URL         string      `json:"url"`
			ValueCoding fhir.Coding `json:"valueCoding"`
		} `json:"extension"`
		fhir.ContactPoint
	} `json:"telecom"`
}

// Every CareTeam the server derives is valid R4 (the google/fhir codec)
// and valid against CPIS-CareTeam (the real catalog validator), and
// carries what the national CP-IS API's CareTeam carries.
func TestCareTeamIsValidAndCarriesThePlan(t *testing.T) {
	codec, err := fhir.NewCodec()
	require.NoError(t, err)
	london, err := time.LoadLocation("Europe/London")
	require.NoError(t, err)
	cat, err := profiles.Load(london)
	require.NoError(t, err)
	orgRes, issues := codec.Decode([]byte(laOrganization))
	require.Empty(t, issues)
	require.Empty(t, cat.Validate(orgRes), "the test Organization is valid CP-IS")
	la := profiles.ParseLA(orgRes)
	require.Equal(t, "0300 123 1000", la.OfficeHours)
	require.Equal(t, "0300 123 9999", la.EmergencyDuty)
	onlyEDT := *la
	onlyEDT.OfficeHours = ""

	now := time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)
	cases := []struct {
		name, status, code, display, end string
		la                               *profiles.LA
		wantStatus                       string
		wantSnomed                       string
		wantPhones                       []string // office-hours, emergency-duty-team order
		wantName                         string
		wantEnds                         bool
	}{
		{"cpp-current", "active", "CPP", "", "2026-12-31", la, "active", "1064311000000109", []string{"0300 123 1000", "0300 123 9999"}, "Local Authority One", true},
		{"lac-open-ended", "active", "LAC", "", "", la, "active", "764841000000100", []string{"0300 123 1000", "0300 123 9999"}, "Local Authority One", false},
		{"ucpp", "active", "UCPP", "", "2026-12-31", la, "active", "", []string{"0300 123 1000", "0300 123 9999"}, "Local Authority One", true},
		{"ended", "active", "CPP", "", "2026-05-31", la, "inactive", "1064311000000109", []string{"0300 123 1000", "0300 123 9999"}, "Local Authority One", false},
		{"finished", "finished", "LAC", "", "2026-12-31", la, "inactive", "764841000000100", []string{"0300 123 1000", "0300 123 9999"}, "Local Authority One", false},
		{"cancelled", "cancelled", "UCPP", "", "", la, "inactive", "", []string{"0300 123 1000", "0300 123 9999"}, "Local Authority One", false},
		{"entered-in-error", "entered-in-error", "CPP", "", "", la, "entered-in-error", "1064311000000109", []string{"0300 123 1000", "0300 123 9999"}, "Local Authority One", false},
		{"no-organization", "active", "CPP", "Plan's LA", "2026-12-31", nil, "active", "1064311000000109", nil, "Plan's LA", true},
		{"no-organization-no-name", "active", "LAC", "", "", nil, "active", "764841000000100", nil, "", false},
		{"only-edt-number", "active", "CPP", "", "", &onlyEDT, "active", "1064311000000109", []string{"", "0300 123 9999"}, "Local Authority One", false},
		{"name-with-status-text", "active", "CPP", `Tricky "status":"active" LA`, "2026-12-31", nil, "active", "1064311000000109", nil, `Tricky "status":"active" LA`, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := planOf(t, codec, london, tc.status, tc.code, tc.display, tc.end)
			body, ends := profiles.CareTeam(p, tc.la, 3, now, now)
			res, issues := codec.Decode(body)
			require.NotNil(t, res)
			assert.Empty(t, issues, "valid R4: %s", body)
			assert.Empty(t, cat.Validate(res), "valid CPIS-CareTeam: %s", body)
			assert.Equal(t, tc.wantEnds, !ends.IsZero())

			var ct renderedCareTeam
			require.NoError(t, json.Unmarshal(body, &ct))
			assert.Equal(t, tc.wantStatus, ct.Status)
			assert.Equal(t, tc.wantName, ct.Name)
			require.Len(t, ct.Category, 1)
			assert.Equal(t, fhir.Coding{System: profiles.PlanTypeSystem, Code: tc.code, Display: profiles.PlanType(tc.code).Display()}, ct.Category[0].Coding[0])
			if tc.wantSnomed != "" {
				require.Len(t, ct.Category[0].Coding, 2)
				assert.Equal(t, profiles.SNOMED, ct.Category[0].Coding[1].System)
				assert.Equal(t, tc.wantSnomed, ct.Category[0].Coding[1].Code)
			} else {
				assert.Len(t, ct.Category[0].Coding, 1)
			}
			assert.Equal(t, fhir.Reference{Type: "Patient", Identifier: &fhir.Identifier{System: fhir.NHSNumberSystem, Value: "9449306753"}}, ct.Subject)
			assert.Equal(t, fhir.Period{Start: "2026-01-01", End: tc.end}, ct.Period)
			assert.Equal(t, []fhir.Reference{{Type: "Organization", Identifier: &fhir.Identifier{System: fhir.ODSSystem, Value: "LA001"}, Display: tc.wantName}}, ct.ManagingOrganization)

			var want []string
			for i, v := range tc.wantPhones {
				if v != "" {
					want = append(want, fmt.Sprintf("%d %s %s", i+1, []string{profiles.ContactOfficeHours, profiles.ContactEmergencyDuty}[i], v))
				}
			}
			var got []string
			for _, tel := range ct.Telecom {
				require.Len(t, tel.Extension, 1)
				assert.Equal(t, profiles.ContactPurposeExtension, tel.Extension[0].URL)
				assert.Equal(t, profiles.ContactPurposeSystem, tel.Extension[0].ValueCoding.System)
				assert.Equal(t, "phone", tel.System)
				assert.Equal(t, "work", tel.Use)
				got = append(got, fmt.Sprintf("%d %s %s", tel.Rank, tel.Extension[0].ValueCoding.Code, tel.Value))
			}
			assert.Equal(t, want, got)
		})
	}
}

// The CareTeam served after its plan's period is over is exactly the
// CareTeam the plan would derive then: it turns inactive by itself.
func TestCareTeamAtMatchesADerivationAfterTheEnd(t *testing.T) {
	codec, err := fhir.NewCodec()
	require.NoError(t, err)
	london, err := time.LoadLocation("Europe/London")
	require.NoError(t, err)
	for _, display := range []string{"Plain Council", `Tricky "status":"active" Council`} {
		p := planOf(t, codec, london, "active", "CPP", display, "2026-06-20")
		la := &profiles.LA{ODS: "LA001", Name: display, OfficeHours: "01", EmergencyDuty: "02"}
		written := time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)
		after := time.Date(2026, 6, 21, 0, 30, 0, 0, london) // midnight at the end of the 20th, London time, has passed

		body, ends := profiles.CareTeam(p, la, 3, written, written)
		later, laterEnds := profiles.CareTeam(p, la, 3, written, after)
		require.False(t, ends.IsZero())
		assert.True(t, laterEnds.IsZero(), "a CareTeam derived after the end never changes")
		assert.Contains(t, string(body), `"status":"active"`)
		assert.Equal(t, string(body), string(profiles.CareTeamAt(body, ends, after.Add(-time.Hour))), "before the end")
		assert.Equal(t, string(later), string(profiles.CareTeamAt(body, ends, after)), "after the end")
		assert.Equal(t, 1, strings.Count(string(later), `"status":"inactive"`))
	}
}

// The plan and the LA read back from stored bodies (as the registry renders
// a CareTeam on read) are what the validated write parsed.
func TestStoredPlanAndLA(t *testing.T) {
	codec, err := fhir.NewCodec()
	require.NoError(t, err)
	london, err := time.LoadLocation("Europe/London")
	require.NoError(t, err)
	for _, tc := range []struct{ status, code, display, end string }{
		{"active", "CPP", "LA One", "2026-12-31"}, {"finished", "UCPP", "", ""}, {"active", "LAC", `Tricky "status":"active"`, "2026-06-20"},
	} {
		want := planOf(t, codec, london, tc.status, tc.code, tc.display, tc.end)
		body := storedPlanBody(t, codec, london, tc.status, tc.code, tc.display, tc.end)
		got, err := profiles.StoredPlan(body, london)
		require.NoError(t, err)
		assert.Equal(t, want, got)
	}
	res, issues := codec.Decode([]byte(laOrganization))
	require.Empty(t, issues)
	la, err := profiles.StoredLA(res.Encode())
	require.NoError(t, err)
	assert.Equal(t, profiles.ParseLA(res), la)
	assert.Equal(t, "0300 123 9999", la.EmergencyDuty)

	_, err = profiles.StoredPlan([]byte(laOrganization), london)
	assert.Error(t, err, "an Organization is not a plan")
	_, err = profiles.StoredLA([]byte(`{"resourceType":`))
	assert.Error(t, err)
}

func storedPlanBody(t *testing.T, codec *fhir.Codec, loc *time.Location, status, code, display, end string) []byte {
	t.Helper()
	per := `{"start":"2026-01-01"}`
	if end != "" {
		per = fmt.Sprintf(`{"start":"2026-01-01","end":%q}`, end)
	}
	res, issues := codec.Decode([]byte(fmt.Sprintf(`{"resourceType":"EpisodeOfCare","id":"p1","status":%q,
	 "type":[{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/plan-type","code":%q}]}],
	 "patient":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9449306753"}},
	 "managingOrganization":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"LA001"},"display":%q},
	 "period":%s}`, status, code, display, per)))
	require.Empty(t, issues)
	res.Stamp(4, time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC), profiles.EpisodeOfCareProfile)
	return res.Encode()
}

// BenchmarkCareTeamOnRead is the cost of rendering one CareTeam on read
// from the stored plan and Organization bodies.
func BenchmarkCareTeamOnRead(b *testing.B) {
	codec, err := fhir.NewCodec()
	require.NoError(b, err)
	london, err := time.LoadLocation("Europe/London")
	require.NoError(b, err)
	res, _ := codec.Decode([]byte(`{"resourceType":"EpisodeOfCare","id":"p1","status":"active",
	 "type":[{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/plan-type","code":"CPP"}]}],
	 "patient":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9449306753"}},
	 "managingOrganization":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"LA001"}},
	 "period":{"start":"2026-01-01","end":"2026-12-31"}}`))
	plan := res.Encode()
	org, _ := codec.Decode([]byte(laOrganization))
	orgBody := org.Encode()
	now := time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		p, err := profiles.StoredPlan(plan, london)
		if err != nil {
			b.Fatal(err)
		}
		la, err := profiles.StoredLA(orgBody)
		if err != nil {
			b.Fatal(err)
		}
		body, _ := profiles.CareTeam(p, la, 1, now, now)
		if len(body) == 0 {
			b.Fatal("empty")
		}
	}
}
