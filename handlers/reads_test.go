package handlers_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
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

// TestHazard_SilentReadByIDShowsChildUnaudited: a B0170 user could read any
// Flag by a guessed id with silent=true (or IsUnscheduledAccessEvent: false)
// and see the child's NHS number with no AuditEvent. A silent read must name
// the patient: reads, vreads and history by id are always audited, so the
// silent switch is refused there and a B0170-only user may not read by id.
func TestHazard_SilentReadByIDShowsChildUnaudited(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: "guessable", nhs: nhsA, la: la1})
		gp, both := e.gp(), e.userToken("B0107", "B0170")
		for _, path := range []string{"Flag/guessable", "EpisodeOfCare/guessable", "Flag/guessable/_history", "Flag/guessable/_history/1", "EpisodeOfCare/guessable/_history", "EpisodeOfCare/guessable/_history/1"} {
			for _, tc := range []struct {
				name, token, query string
				headers            []string
			}{
				{"b0170-silent-param", gp, "?silent=true", nil},
				{"b0170-silent-header", gp, "", []string{"IsUnscheduledAccessEvent", "false"}},
				{"b0170-no-switch", gp, "", nil},
				{"both-codes-silent-param", both, "?silent=true", nil},
				{"both-codes-silent-header", both, "", []string{"IsUnscheduledAccessEvent", "false"}},
			} {
				t.Run(path+"/"+tc.name+"-403", func(t *testing.T) {
					r := e.do(http.MethodGet, path+tc.query, tc.token, "", tc.headers...)
					require.Equal(t, http.StatusForbidden, r.Code, r.Body.String())
					assert.Equal(t, "ACCESS_DENIED", r.code())
					assert.NotContains(t, r.Body.String(), nhsA)
				})
			}
		}
		assert.Empty(t, e.auditOf(nhsA), "nothing was shown")
		t.Run("audited-read-200", func(t *testing.T) {
			r := e.do(http.MethodGet, "Flag/guessable?silent=false", both, "")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Len(t, e.auditOf(nhsA), 1, "a read by id is always audited")
		})
	})
}

// TestHazard_ReadOfAnotherLAsIDRevealsIt: a local authority reading another
// LA's resource by id got 403, telling it the id exists (an existence
// oracle over guessable ids). It now gets exactly the answer a missing id
// gets; a write over another's id with If-Match gets the 412 a missing id
// gets, and a delete the 404.
func TestHazard_ReadOfAnotherLAsIDRevealsIt(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: "theirs", nhs: nhsB, la: la2})
		e.putOrg("org2", la2, "Local Authority Two")
		la := e.laToken(la1)
		same := func(t *testing.T, method, theirs, missing, body string, headers ...string) {
			t.Helper()
			a := e.do(method, theirs, la, body, headers...)
			m := e.do(method, missing, la, body, headers...)
			assert.Equal(t, m.Code, a.Code, a.Body.String())
			assert.NotContains(t, a.Body.String(), nhsB)
			norm := func(r resp, id string) string { return strings.ReplaceAll(r.Body.String(), id, "ID") }
			assert.Equal(t, norm(m, "missing"), norm(a, "theirs"), "the same answer as a missing id")
			assert.Equal(t, m.Header().Get("ETag"), a.Header().Get("ETag"))
		}
		for _, p := range []string{"EpisodeOfCare/%s", "Flag/%s", "EpisodeOfCare/%s/_history", "Flag/%s/_history", "EpisodeOfCare/%s/_history/1", "Flag/%s/_history/1"} {
			t.Run("GET-"+p+"-404", func(t *testing.T) {
				same(t, http.MethodGet, fmt.Sprintf(p, "theirs"), fmt.Sprintf(p, "missing"), "")
				assert.Equal(t, http.StatusNotFound, e.do(http.MethodGet, fmt.Sprintf(p, "theirs"), la, "").Code)
			})
		}
		t.Run("GET-Organization-404", func(t *testing.T) {
			r := e.do(http.MethodGet, "Organization/org2", la, "")
			m := e.do(http.MethodGet, "Organization/missing", la, "")
			assert.Equal(t, http.StatusNotFound, r.Code)
			assert.Equal(t, m.Body.String(), r.Body.String())
		})
		t.Run("DELETE-404", func(t *testing.T) {
			same(t, http.MethodDelete, "EpisodeOfCare/theirs", "EpisodeOfCare/missing", "")
		})
		t.Run("PUT-with-If-Match-412", func(t *testing.T) {
			a := e.do(http.MethodPut, "EpisodeOfCare/theirs", la, planJSON(planSpec{id: "theirs", nhs: nhsC, la: la1}), "If-Match", `W/"1"`)
			m := e.do(http.MethodPut, "EpisodeOfCare/missing", la, planJSON(planSpec{id: "missing", nhs: nhsC, la: la1}), "If-Match", `W/"1"`)
			assert.Equal(t, http.StatusPreconditionFailed, a.Code, a.Body.String())
			assert.Equal(t, strings.ReplaceAll(m.Body.String(), "missing", "ID"), strings.ReplaceAll(a.Body.String(), "theirs", "ID"))
		})
		t.Run("PUT-409-names-no-one", func(t *testing.T) {
			// Without If-Match a free id is created, so no answer can hide
			// that this one is taken: 409, naming no organisation.
			r := e.do(http.MethodPut, "EpisodeOfCare/theirs", la, planJSON(planSpec{id: "theirs", nhs: nhsC, la: la1}))
			assert.Equal(t, http.StatusConflict, r.Code, r.Body.String())
			assert.NotContains(t, r.Body.String(), la2)
			assert.NotContains(t, r.Body.String(), "another organisation")
		})
		r := e.do(http.MethodGet, "EpisodeOfCare/theirs", e.laToken(la2), "")
		require.Equal(t, http.StatusOK, r.Code)
		assert.Equal(t, `W/"1"`, r.Header().Get("ETag"), "nothing changed")
	})
}
