package profiles_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/fhir"
	"cpis/profiles"
)

// TestFlagAtMatchesADerivationAfterTheEnd checks that the Flag served after
// its plan's period is over is exactly the Flag the plan would derive then.
func TestFlagAtMatchesADerivationAfterTheEnd(t *testing.T) {
	codec, err := fhir.NewCodec()
	require.NoError(t, err)
	london, err := time.LoadLocation("Europe/London")
	require.NoError(t, err)
	for _, la := range []string{"Plain Council", `Tricky "status":"active" Council`} {
		body := fmt.Sprintf(`{"resourceType":"EpisodeOfCare","id":"p1","status":"active",
		 "type":[{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/plan-type","code":"CPP"}]}],
		 "patient":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9449306753"}},
		 "managingOrganization":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"LA001"},"display":%q},
		 "period":{"start":"2026-01-01","end":"2026-06-20"}}`, la)
		res, issues := codec.Decode([]byte(body))
		require.Empty(t, issues)
		plan := profiles.ParsePlan(res, london)
		written := time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)
		after := time.Date(2026, 6, 21, 0, 30, 0, 0, london)

		now := profiles.Flag(plan, 3, written, la, written)
		later := profiles.Flag(plan, 3, written, la, after)
		require.False(t, now.Ends.IsZero())
		assert.True(t, later.Ends.IsZero(), "a Flag derived after the end never changes")
		assert.Contains(t, string(now.Body), `"status":"active"`)
		assert.Equal(t, string(now.Body), string(profiles.FlagAt(now.Body, now.Ends, after.Add(-time.Hour))), "before the end")
		assert.Equal(t, string(later.Body), string(profiles.FlagAt(now.Body, now.Ends, after)), "after the end")
		assert.Equal(t, 1, strings.Count(string(later.Body), `"status":"inactive"`))
	}
}
