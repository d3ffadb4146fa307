package handlers_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
)

const subsettedTag = `{"code":"SUBSETTED","display":"subsetted","system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue"}`

// subsetted reports whether a resource carries the SUBSETTED tag.
func subsetted(t *testing.T, res map[string]any) bool {
	t.Helper()
	meta, _ := res["meta"].(map[string]any)
	tags, _ := meta["tag"].([]any)
	for _, tag := range tags {
		b, err := json.Marshal(tag)
		require.NoError(t, err)
		if string(b) == subsettedTag {
			return true
		}
	}
	return false
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestSubsetting: _summary and _elements leave elements out of reads and
// searches, keep id, meta and the elements R4 makes mandatory (every answer
// is validated as R4 by the harness), and mark what they cut SUBSETTED.
func TestSubsetting(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putOrg("org1", la1, "Somewhere Council")
		e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1, ident: "P1"})
		e.putPlan(planSpec{id: "a2", nhs: nhsA, la: la1, ident: "P2"})
		la := e.laToken(la1)

		for _, tc := range []struct {
			name, path string
			token      string
			want       []string // the elements of the (first) resource
			tagged     bool
		}{
			{"read-elements", "EpisodeOfCare/a1?_elements=status,period", la,
				[]string{"resourceType", "id", "meta", "status", "patient", "period"}, true},
			{"read-elements-typed", "EpisodeOfCare/a1?_elements=EpisodeOfCare.type", la,
				[]string{"resourceType", "id", "meta", "status", "patient", "type"}, true},
			{"read-summary-false", "EpisodeOfCare/a1?_summary=false", la,
				[]string{"resourceType", "id", "meta", "status", "patient", "type", "identifier", "managingOrganization", "period"}, false},
			{"read-summary-true-nothing-cut", "EpisodeOfCare/a1?_summary=true", la,
				[]string{"resourceType", "id", "meta", "status", "patient", "type", "identifier", "managingOrganization", "period"}, false},
			{"org-summary-true", "Organization/org1?_summary=true", la,
				[]string{"resourceType", "id", "meta", "identifier", "name"}, true},
			{"org-summary-text", "Organization/org1?_summary=text", la,
				[]string{"resourceType", "id", "meta"}, true},
			{"flag-summary-true", "Flag/a1?_summary=true", e.nurse(),
				[]string{"resourceType", "id", "meta", "status", "category", "code", "subject", "period", "author"}, true},
			{"flag-search-summary-text", flagSearch(nhsA) + "&_summary=text", e.nurse(),
				[]string{"resourceType", "id", "meta", "status", "code", "subject"}, true},
			{"flag-search-elements", flagSearch(nhsA) + "&_elements=period", e.nurse(),
				[]string{"resourceType", "id", "meta", "status", "code", "subject", "period"}, true},
			{"history-elements", "EpisodeOfCare/a1/_history?_elements=period", la,
				[]string{"resourceType", "id", "meta", "status", "patient", "period"}, true},
			{"careteam-summary-true", "CareTeam/a1?_summary=true", e.nurse(), nil, true},
			{"structuredefinition-summary-true", "StructureDefinition/CPIS-EpisodeOfCare?_summary=true", la, nil, true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := e.do(http.MethodGet, tc.path, tc.token, "")
				require.Equal(t, http.StatusOK, r.Code, r.Body.String())
				res := r.json()
				if res["resourceType"] == "Bundle" {
					es := r.entries("")
					require.NotEmpty(t, es)
					res = es[0]
				}
				if tc.want != nil {
					assert.ElementsMatch(t, tc.want, keys(res))
				}
				assert.Equal(t, tc.tagged, subsetted(t, res), "%v", res["meta"])
			})
		}
		t.Run("structuredefinition-summary-leaves-out-snapshot", func(t *testing.T) {
			r := e.do(http.MethodGet, "StructureDefinition/CPIS-EpisodeOfCare?_summary=true", la, "")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.NotContains(t, r.json(), "snapshot")
			assert.NotContains(t, r.json(), "differential")
		})
		t.Run("paging-keeps-the-subset", func(t *testing.T) {
			r := e.do(http.MethodGet, "EpisodeOfCare?_count=1&_elements=period", la, "")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			next := r.link("next")
			require.NotEmpty(t, next)
			r = e.do(http.MethodGet, next, la, "")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			es := r.entries("match")
			require.Len(t, es, 1)
			assert.NotContains(t, es[0], "type")
			assert.True(t, subsetted(t, es[0]))
		})
		for _, tc := range []struct{ name, path string }{
			{"summary-unknown-400", "EpisodeOfCare?_summary=most"},
			{"read-summary-count-400", "EpisodeOfCare/a1?_summary=count"},
			{"elements-nested-400", "EpisodeOfCare?_elements=period.start"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := e.do(http.MethodGet, tc.path, la, "")
				require.Equal(t, http.StatusBadRequest, r.Code, r.Body.String())
			})
		}
	})
}

// TestHazard_SubsetWrittenBackErasesTheRest: a subset written back would
// erase what it left out (a plan's type, an authority's emergency number).
// Every write refuses a resource with the SUBSETTED tag, and the store is
// unchanged.
func TestHazard_SubsetWrittenBackErasesTheRest(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putOrg("org1", la1, "Somewhere Council")
		la := e.laToken(la1)
		r := e.do(http.MethodGet, "Organization/org1?_summary=true", la, "")
		require.Equal(t, http.StatusOK, r.Code)
		sub := r.Body.String()
		require.Contains(t, sub, "SUBSETTED")
		require.NotContains(t, sub, "emergency-duty-team")

		check := func(t *testing.T, r resp, want int) {
			t.Helper()
			require.Equal(t, want, r.Code, r.Body.String())
			assert.Contains(t, r.Body.String(), "SUBSETTED")
			recs, err := e.store.History(t.Context(), "Organization", "org1")
			require.NoError(t, err)
			assert.Len(t, recs, 1, "nothing written")
			assert.Contains(t, string(recs[0].Body), "emergency-duty-team")
		}
		t.Run("put-422", func(t *testing.T) {
			check(t, e.do(http.MethodPut, "Organization/org1", la, sub), http.StatusUnprocessableEntity)
		})
		t.Run("conditional-put-422", func(t *testing.T) {
			check(t, e.do(http.MethodPut, "Organization?identifier=https://fhir.nhs.uk/Id/ods-organization-code|"+la1, la, sub), http.StatusUnprocessableEntity)
		})
		t.Run("batch-entry-422", func(t *testing.T) {
			bundle := `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"PUT","url":"Organization/org1"},"resource":` + sub + `}]}`
			r := e.post(la, bundle)
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Equal(t, []string{"422 Unprocessable Entity"}, r.statuses())
			check(t, r, http.StatusOK)
		})
		t.Run("patch-adding-the-tag-422", func(t *testing.T) {
			patch := `[{"op":"add","path":"/meta/tag","value":[` + subsettedTag + `]}]`
			check(t, e.do(http.MethodPatch, "Organization/org1", la, patch, "Content-Type", "application/json-patch+json"), http.StatusUnprocessableEntity)
		})
		t.Run("validate-reports-it", func(t *testing.T) {
			r := e.do(http.MethodPost, "Organization/$validate", la, sub)
			require.Equal(t, http.StatusOK, r.Code)
			assert.Contains(t, r.Body.String(), "SUBSETTED")
		})
	})
}

// TestHazard_SummaryCountRevealsPlansUnaudited: _summary=count on a search
// by NHS number tells whether the child is on plans: it is audited like the
// search, and refused when the audit cannot be written.
func TestHazard_SummaryCountRevealsPlansUnaudited(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
		for i, typ := range []string{"Flag", "EpisodeOfCare", "CareTeam"} {
			r := e.do(http.MethodGet, typ+"?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|"+nhsA+"&_summary=count", e.nurse(), "")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Equal(t, 1, r.total())
			assert.Empty(t, r.entries("match"))
			assert.Len(t, e.auditOf(nhsA), i+1)
		}
	})
	dir := t.TempDir()
	e := newEnv(t, backend{name: "sqlite", open: func(t testing.TB) store.Store { return openSQLite(t, dir) }})
	e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
	restore := refuseAudit(t, dir)
	defer restore()
	r := e.do(http.MethodGet, flagSearch(nhsA)+"&_summary=count", e.nurse(), "")
	require.Equal(t, http.StatusServiceUnavailable, r.Code, r.Body.String())
	assert.False(t, strings.Contains(r.Body.String(), `"total"`))
}
