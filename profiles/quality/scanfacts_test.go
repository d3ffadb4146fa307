package quality

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// storedBodies are plan bodies as the store keeps them, and variations
// the one-pass reading must read as encoding/json does or leave to it.
var storedBodies = []string{
	`{"resourceType":"EpisodeOfCare","id":"la001-000001","meta":{"versionId":"1","lastUpdated":"2026-06-15T10:00:00.000Z","profile":["https://fhir.cpis.dev/StructureDefinition/CPIS-EpisodeOfCare"]},"identifier":[{"system":"https://LA001.example/plan-id","value":"1"}],"status":"active","type":[{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/plan-type","code":"CPP"}]}],"patient":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9449306753"}},"managingOrganization":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"LA001"},"display":"Local Authority LA001"},"period":{"start":"2026-01-02","end":"2027-01-01"}}`,
	` { "resourceType" : "EpisodeOfCare" , "id" : "p1" , "status" : "entered-in-error" , "identifier" : [ { "use" : "official" , "system" : "s" , "value" : "v" } , { "value" : "w" } ] , "type" : [ { "coding" : [ { "system" : "http://snomed.info/sct" , "code" : "764841000000100" , "display" : "x" } ] } , { "coding" : [ { "system" : "https://fhir.cpis.dev/CodeSystem/plan-type" , "code" : "CPP" } ] } ] , "period" : { "start" : "2026-03-29T01:30:00+01:00" } , "extension" : [ { "url" : "u" , "valueInteger" : -12.5e+3 , "valueBoolean" : true , "x" : null , "y" : false } ] } `,
	`{"resourceType":"EpisodeOfCare","id":"p2","type":[{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/plan-type","code":"UCPP"}]}],"text":{"div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">caf\u00e9 \\ \/ \n</div>"},"period":{"end":"2030"}}`,
	`{"resourceType":"EpisodeOfCare","id":"p3","status":"fin\u0069shed"}`,                    // an escape in a kept string
	`{"resourceType":"EpisodeOfCare","ID":"p4","Status":"active"}`,                           // keys in another case
	`{"resourceType":"EpisodeOfCare","id":"p5","id":"p6"}`,                                   // a key twice
	`{"resourceType":"EpisodeOfCare","id":"p7","period":null,"patient":{"identifier":null}}`, // null
	`{"resourceType":"EpisodeOfCare","id":"p8","type":[{"coding":[{"system":"s","code":"c","display":5}]}]}`,
	`{"resourceType":"EpisodeOfCare","id":"p9","identifier":[{"use":7}]}`,
	`{"resourceType":"EpisodeOfCare","id":"p10","x":01}`,
	`{"resourceType":"EpisodeOfCare","id":"p11"} x`,
	`{"resourceType":"Organization","id":"o1"}`,
	`{"resourceType":"EpisodeOfCare","id":"p12","x":"\q"}`,
	`{"resourceType":"EpisodeOfCare","id":"p13","patient":{"identifier":{"value":"9449306753","value":"9449306761"}}}`,
	`{"resourceType":"EpisodeOfCare","id":"p14\xff"}`,
	`[]`,
	``,
}

// The one-pass reading of a stored plan reads the facts encoding/json
// does, and reads a stored body itself rather than leaving it to
// encoding/json (the point of it).
func TestScanPlanFacts_AgreesWithEncodingJSON(t *testing.T) {
	london, err := time.LoadLocation("Europe/London")
	require.NoError(t, err)
	updated := time.Date(2026, 6, 15, 10, 0, 0, 0, time.UTC)
	for i, b := range storedBodies {
		agree(t, []byte(b), updated, london)
		if i < 3 {
			_, ok := scanPlanFacts([]byte(b), updated, london)
			assert.True(t, ok, "body %d is read in one pass", i)
		}
	}
}

func agree(t *testing.T, body []byte, updated time.Time, loc *time.Location) {
	t.Helper()
	want, werr := decodePlanFacts(body, updated, loc)
	got, gerr := ParsePlanFacts(body, updated, loc)
	if werr != nil {
		assert.Error(t, gerr, "%s", body)
		return
	}
	require.NoError(t, gerr, "%s", body)
	assert.Equal(t, normal(want), normal(got), "%s", body)
}

// FuzzParsePlanFacts: whatever the body, ParsePlanFacts and encoding/json
// agree (the one-pass reading gives up rather than differ).
func FuzzParsePlanFacts(f *testing.F) {
	for _, b := range storedBodies {
		f.Add([]byte(b))
	}
	london, err := time.LoadLocation("Europe/London")
	require.NoError(f, err)
	updated := time.Date(2026, 6, 15, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) { agree(t, body, updated, london) })
}
