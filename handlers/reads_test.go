package handlers_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHazard_IdentifierSearchMissesPlan: a health user's search of a
// patient's plans by the LA's identifier was filtered after paging, so a
// page that did not hold the plan answered total 0 with no next link, and
// _summary=count always said 0, although the plan exists. The store now
// applies the identifier before paging and counting.
func TestHazard_IdentifierSearchMissesPlan(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		// The plan sought sorts after the patient's other plans.
		e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1, ident: "OTHER1"})
		e.putPlan(planSpec{id: "a2", nhs: nhsA, la: la1})
		e.putPlan(planSpec{id: "a3", nhs: nhsA, la: la1, ident: "OTHER3"})
		e.putPlan(planSpec{id: "a4", nhs: nhsA, la: la1, ident: "OTHER4"})
		e.putPlan(planSpec{id: "a5", nhs: nhsA, la: la2, ident: "SOUGHT"})
		e.putPlan(planSpec{id: "b1", nhs: nhsB, la: la1, ident: "SOUGHT"})
		search := "EpisodeOfCare?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|" + nhsA + "&identifier=https://la002.example/plan-id|SOUGHT"
		for _, count := range []string{"1", "3"} {
			t.Run("_count="+count, func(t *testing.T) {
				var ids []string
				next := search + "&_count=" + count
				for pages := 0; next != ""; pages++ {
					require.Less(t, pages, 10)
					r := e.do(http.MethodGet, next, e.nurse(), "")
					require.Equal(t, http.StatusOK, r.Code, r.Body.String())
					assert.Equal(t, 1, r.total(), "the total counts the plan whichever page holds it")
					for _, m := range r.entries("match") {
						ids = append(ids, m["id"].(string))
					}
					next = r.link("next")
				}
				assert.Equal(t, []string{"a5"}, ids, "the plan is found")
			})
		}
		t.Run("_summary=count", func(t *testing.T) {
			r := e.do(http.MethodGet, search+"&_summary=count", e.nurse(), "")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Equal(t, 1, r.total())
		})
		t.Run("audit-names-every-plan-matched", func(t *testing.T) {
			recs, err := e.store.AuditBySubject(context.Background(), nhsA, time.Time{}, 100)
			require.NoError(t, err)
			require.NotEmpty(t, recs)
			for _, a := range recs {
				assert.Equal(t, []string{la2}, a.Owners, "the LA whose plan matched is told, and only it")
			}
		})
		t.Run("two-identifiers-400", func(t *testing.T) {
			r := e.do(http.MethodGet, search+"&identifier=https://la001.example/plan-id|OTHER1", e.nurse(), "")
			assert.Equal(t, http.StatusBadRequest, r.Code)
			assert.Equal(t, "INVALID_SEARCH_DATA", r.code())
		})
	})
}
