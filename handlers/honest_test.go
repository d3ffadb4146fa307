package handlers_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHonestSearches: every search type reports what it ignored (unknown
// parameters, _revinclude, and _include values it does not serve, such as a
// target other than the one it includes) in an OperationOutcome entry, or
// refuses them with Prefer: handling=strict. What it ignores, it does not
// apply (no Organization is included for an ignored _include).
func TestHonestSearches(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putOrg("org1", la1, "Somewhere Council")
		e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
		byNHS := "patient:identifier=https://fhir.nhs.uk/Id/nhs-number|" + nhsA
		for _, tc := range []struct {
			name, query, token string
			ignored            []string
		}{
			{"flag", "Flag?" + byNHS + "&colour=red&_revinclude=Provenance:target&_include=Flag:author:Practitioner", e.nurse(),
				[]string{"colour", "_revinclude=Provenance:target", "_include=Flag:author:Practitioner"}},
			{"flag-include-other-param", "Flag?" + byNHS + "&_include=Flag:subject", e.nurse(), []string{"_include=Flag:subject"}},
			{"episodeofcare", "EpisodeOfCare?" + byNHS + "&_include=EpisodeOfCare:organization:Practitioner&_revinclude=Flag:subject", e.nurse(),
				[]string{"_include=EpisodeOfCare:organization:Practitioner", "_revinclude=Flag:subject"}},
			{"organization", "Organization?_include=Organization:partof&name=x", e.laToken(la1), []string{"name", "_include=Organization:partof"}},
			{"careteam", "CareTeam?" + byNHS + "&_include=CareTeam:subject&_revinclude=Flag:subject", e.nurse(),
				[]string{"_include=CareTeam:subject", "_revinclude=Flag:subject"}},
			{"structuredefinition", "StructureDefinition?_include=StructureDefinition:base&status=active", e.nurse(),
				[]string{"status", "_include=StructureDefinition:base"}},
			{"codesystem", "CodeSystem?_revinclude=ValueSet:reference", e.nurse(), []string{"_revinclude=ValueSet:reference"}},
			{"valueset", "ValueSet?name:contains=plan", e.nurse(), []string{"name:contains"}},
		} {
			t.Run(tc.name+"-reported", func(t *testing.T) {
				r := e.do(http.MethodGet, tc.query, tc.token, "")
				require.Equal(t, http.StatusOK, r.Code, r.Body.String())
				oo := r.entries("outcome")
				require.Len(t, oo, 1, r.Body.String())
				diag := jpath[string](t, oo[0], "issue", 0, "diagnostics")
				for _, ig := range tc.ignored {
					assert.Contains(t, diag, ig)
				}
				assert.Empty(t, r.entries("include"), "an ignored _include includes nothing")
			})
			t.Run(tc.name+"-strict-400", func(t *testing.T) {
				r := e.do(http.MethodGet, tc.query, tc.token, "", "Prefer", "handling=strict")
				require.Equal(t, http.StatusBadRequest, r.Code, r.Body.String())
				assert.Equal(t, "INVALID_SEARCH_DATA", r.code())
				for _, ig := range tc.ignored {
					assert.Contains(t, r.Body.String(), ig)
				}
			})
		}
		t.Run("served-include-not-reported", func(t *testing.T) {
			r := e.do(http.MethodGet, "Flag?"+byNHS+"&_include=Flag:author:Organization", e.nurse(), "", "Prefer", "handling=strict")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Len(t, r.entries("include"), 1)
			assert.Empty(t, r.entries("outcome"))
		})
	})
}
