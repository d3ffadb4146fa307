package handlers_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFlagSearch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putOrg("org1", la1, "Local Authority One")
		e.putOrg("org2", la2, "Local Authority Two")
		e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
		e.putPlan(planSpec{id: "a2", nhs: nhsA, la: la2, planType: "LAC"})
		e.putPlan(planSpec{id: "b1", nhs: nhsB, la: la1, planType: "UCPP"})
		nurse := e.nurse()

		for _, spelling := range []string{"patient:identifier", "patient.identifier", "subject:identifier", "subject.identifier"} {
			t.Run("search-200-"+spelling, func(t *testing.T) {
				r := e.do(http.MethodGet, "Flag?"+spelling+"=https://fhir.nhs.uk/Id/nhs-number|"+nhsA, nurse, "")
				require.Equal(t, http.StatusOK, r.Code, r.Body.String())
				assert.Equal(t, 2, r.total())
				assert.Equal(t, "searchset", r.json()["type"])
				assert.NotContains(t, r.link("self"), nhsA, "a link never names the patient: it is sealed")
				assert.True(t, strings.HasPrefix(r.link("self"), base+"/Flag?_cursor="), r.link("self"))
			})
		}
		t.Run("search-without-system-200", func(t *testing.T) {
			r := e.do(http.MethodGet, "Flag?patient:identifier="+nhsA, nurse, "")
			require.Equal(t, http.StatusOK, r.Code)
			assert.Equal(t, 2, r.total())
		})
		t.Run("nothing-found-200", func(t *testing.T) {
			r := e.do(http.MethodGet, flagSearch(nhsC), nurse, "")
			require.Equal(t, http.StatusOK, r.Code)
			assert.Equal(t, 0, r.total())
		})
		t.Run("include-author", func(t *testing.T) {
			r := e.do(http.MethodGet, flagSearch(nhsA)+"&_include=Flag:author", nurse, "")
			require.Equal(t, http.StatusOK, r.Code)
			assert.Len(t, r.entries("match"), 2)
			inc := r.entries("include")
			require.Len(t, inc, 2)
			phones := map[string]string{}
			for _, o := range inc {
				assert.Equal(t, "Organization", o["resourceType"])
				for _, c := range jpath[[]any](t, o, "contact") {
					cm := jpath[map[string]any](t, c)
					purpose := jpath[string](t, cm, "purpose", "coding", 0, "code")
					phones[jpath[string](t, o, "id")+"/"+purpose] = jpath[string](t, cm, "telecom", 0, "value")
				}
			}
			assert.Equal(t, "0300 123 9999", phones["org1/emergency-duty-team"], "the LA's emergency number is in the answer")
		})
		t.Run("la-sees-only-its-own", func(t *testing.T) {
			r := e.do(http.MethodGet, flagSearch(nhsA)+"&_include=Flag:author", e.laToken(la2), "")
			require.Equal(t, http.StatusOK, r.Code)
			require.Equal(t, 1, r.total())
			assert.Equal(t, "a2", r.entries("match")[0]["id"])
			inc := r.entries("include")
			require.Len(t, inc, 1)
			assert.Equal(t, "org2", inc[0]["id"])
		})
		t.Run("la-lists-its-flags", func(t *testing.T) {
			r := e.do(http.MethodGet, "Flag", e.laToken(la1), "")
			require.Equal(t, http.StatusOK, r.Code)
			assert.Equal(t, 2, r.total())
		})
		t.Run("episodeofcare-search", func(t *testing.T) {
			r := e.do(http.MethodGet, "EpisodeOfCare?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|"+nhsA+"&_include=EpisodeOfCare:organization", nurse, "")
			require.Equal(t, http.StatusOK, r.Code)
			assert.Equal(t, 2, r.total())
			assert.Len(t, r.entries("include"), 2)
		})
		t.Run("post-search", func(t *testing.T) {
			req := "patient:identifier=" + url.QueryEscape("https://fhir.nhs.uk/Id/nhs-number|"+nhsB)
			r := e.doForm("Flag/_search", nurse, req)
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Equal(t, 1, r.total())
			assert.Equal(t, "UCPP", jget(t, r.entries("match")[0], "code", "coding", 0, "code"))
		})
	})
}

func TestSearchErrors(t *testing.T) {
	e := newEnv(t, backends()[0])
	nurse := e.nurse()
	cases := []struct {
		name, path string
		status     int
		code       string
	}{
		{"bad-check-digit-400", flagSearch("9449306754"), 400, "INVALID_SEARCH_DATA"},
		{"too-short-400", flagSearch("944930675"), 400, "INVALID_SEARCH_DATA"},
		{"letters-400", flagSearch("94493O6753"), 400, "INVALID_SEARCH_DATA"},
		{"wrong-system-400", "Flag?patient:identifier=https://example.org|" + nhsA, 400, "INVALID_SEARCH_DATA"},
		{"two-numbers-400", flagSearch(nhsA) + "," + nhsB, 400, "INVALID_SEARCH_DATA"},
		{"no-nhs-number-400", "Flag?_id=a1", 400, "INVALID_SEARCH_DATA"},
		{"episodeofcare-no-nhs-number-400", "EpisodeOfCare", 400, "INVALID_SEARCH_DATA"},
		{"auditevent-no-nhs-number-400", "AuditEvent", 400, "INVALID_SEARCH_DATA"},
		{"bad-count-400", flagSearch(nhsA) + "&_count=lots", 400, "INVALID_SEARCH_DATA"},
		{"bad-silent-400", flagSearch(nhsA) + "&silent=maybe", 400, "INVALID_VALUE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(http.MethodGet, tc.path, nurse, "")
			assert.Equal(t, tc.status, r.Code, r.Body.String())
			assert.Equal(t, tc.code, r.code())
		})
	}
}

func TestUnknownSearchParameters(t *testing.T) {
	e := newEnv(t, backends()[0])
	e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
	r := e.do(http.MethodGet, flagSearch(nhsA)+"&colour=blue", e.nurse(), "")
	require.Equal(t, http.StatusOK, r.Code)
	assert.Equal(t, 1, r.total())
	assert.NotContains(t, r.link("self"), "colour", "self shows the parameters applied")
	oo := r.entries("outcome")
	require.Len(t, oo, 1, "the ignored parameter is reported")
	assert.Contains(t, jget(t, oo[0], "issue", 0, "diagnostics"), "colour")

	r = e.do(http.MethodGet, flagSearch(nhsA)+"&colour=blue", e.nurse(), "", "Prefer", "handling=strict")
	assert.Equal(t, http.StatusBadRequest, r.Code)
	assert.Equal(t, "INVALID_SEARCH_DATA", r.code())
}

func TestSearchPaging(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		for i := 0; i < 7; i++ {
			e.putPlan(planSpec{id: fmt.Sprintf("p%d", i), nhs: nhsA, la: la1})
		}
		seen := map[string]bool{}
		next := flagSearch(nhsA) + "&_count=3"
		pages := 0
		for next != "" {
			r := e.do(http.MethodGet, next, e.nurse(), "")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Equal(t, 7, r.total())
			for _, f := range r.entries("match") {
				assert.False(t, seen[jpath[string](t, f, "id")], "no repeats")
				seen[jpath[string](t, f, "id")] = true
			}
			next = r.link("next")
			if next != "" {
				assert.True(t, strings.HasPrefix(next, base+"/Flag?"), next)
			}
			pages++
			require.Less(t, pages, 10)
		}
		assert.Len(t, seen, 7)
		assert.Equal(t, 3, pages)

		r := e.do(http.MethodGet, "Flag?_count=5000", e.laToken(la1), "")
		assert.Contains(t, r.link("self"), "_count=1000", "_count is capped at 1000")
		r = e.do(http.MethodGet, flagSearch(nhsA)+"&_summary=count", e.nurse(), "")
		assert.Equal(t, 7, r.total())
		assert.Empty(t, r.entries(""))
	})
}
