package handlers_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
)

func TestPlanLifecycle(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		la := e.laToken(la1)
		e.putOrg("org1", la1, "Local Authority One")

		// create-201
		r := e.do(http.MethodPut, "EpisodeOfCare/p1", la, planJSON(planSpec{id: "p1", nhs: nhsA, la: la1}))
		require.Equal(t, http.StatusCreated, r.Code, r.Body.String())
		assert.Equal(t, `W/"1"`, r.Header().Get("ETag"))
		assert.Equal(t, base+"/EpisodeOfCare/p1/_history/1", r.Header().Get("Location"))
		assert.NotEmpty(t, r.Header().Get("Last-Modified"))
		m := r.json()
		assert.Equal(t, "p1", m["id"])
		assert.Equal(t, "1", jget(t, m, "meta", "versionId"))

		// the derived Flag: same id and version
		r = e.do(http.MethodGet, "Flag/p1", e.nurse(), "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		f := r.json()
		assert.Equal(t, "active", f["status"])
		assert.Equal(t, `W/"1"`, r.Header().Get("ETag"))
		assert.Equal(t, nhsA, jget(t, f, "subject", "identifier", "value"))
		assert.Equal(t, "Local Authority One", jget(t, f, "author", "display"), "author named from the LA's Organization")
		assert.Equal(t, "CPP", jget(t, f, "code", "coding", 0, "code"))
		assert.Equal(t, "EpisodeOfCare/p1", jget(t, f, "extension", 0, "valueReference", "reference"))

		// update-200 with the right If-Match
		r = e.do(http.MethodPut, "EpisodeOfCare/p1", la, planJSON(planSpec{id: "p1", nhs: nhsA, la: la1, planType: "LAC"}), "If-Match", `W/"1"`)
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		assert.Equal(t, `W/"2"`, r.Header().Get("ETag"))

		// update-412 with a stale If-Match, and nothing written
		r = e.do(http.MethodPut, "EpisodeOfCare/p1", la, planJSON(planSpec{id: "p1", nhs: nhsA, la: la1, planType: "UCPP"}), "If-Match", `W/"1"`)
		require.Equal(t, http.StatusPreconditionFailed, r.Code)
		assert.Equal(t, "PRECONDITION_FAILED", r.code())
		r = e.do(http.MethodGet, "Flag/p1", e.nurse(), "")
		assert.Equal(t, "LAC", jget(t, r.json(), "code", "coding", 0, "code"))

		// vread and history
		r = e.do(http.MethodGet, "EpisodeOfCare/p1/_history/1", la, "")
		require.Equal(t, http.StatusOK, r.Code)
		assert.Equal(t, "CPP", jget(t, r.json(), "type", 0, "coding", 0, "code"))
		r = e.do(http.MethodGet, "Flag/p1/_history", e.nurse(), "")
		require.Equal(t, http.StatusOK, r.Code)
		assert.Equal(t, 2, r.total())
		assert.Equal(t, "history", r.json()["type"])
		r = e.do(http.MethodGet, "EpisodeOfCare/p1/_history/9", la, "")
		assert.Equal(t, http.StatusNotFound, r.Code)
		assert.Equal(t, "RESOURCE_NOT_FOUND", r.code())

		// delete-200: the plan and its Flag go
		r = e.do(http.MethodDelete, "EpisodeOfCare/p1", la, "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		r = e.do(http.MethodGet, "Flag/p1", e.nurse(), "")
		assert.Equal(t, http.StatusGone, r.Code)
		r = e.do(http.MethodGet, flagSearch(nhsA), e.nurse(), "")
		assert.Equal(t, 0, r.total())
		r = e.do(http.MethodGet, "EpisodeOfCare/p1", la, "")
		assert.Equal(t, http.StatusGone, r.Code)

		// recreate after delete: 201 and the versions go on
		r = e.do(http.MethodPut, "EpisodeOfCare/p1", la, planJSON(planSpec{id: "p1", nhs: nhsA, la: la1}))
		require.Equal(t, http.StatusCreated, r.Code)
		assert.Equal(t, `W/"4"`, r.Header().Get("ETag"))

		// read-404
		r = e.do(http.MethodGet, "EpisodeOfCare/nope", la, "")
		assert.Equal(t, http.StatusNotFound, r.Code)
		assert.Equal(t, "RESOURCE_NOT_FOUND", r.code())
	})
}

func TestFlagWritesAreNotAllowed(t *testing.T) {
	e := newEnv(t, backends()[0])
	la := e.laToken(la1)
	for _, tc := range []struct{ method, path string }{
		{http.MethodPost, "Flag"}, {http.MethodPut, "Flag/p1"}, {http.MethodDelete, "Flag/p1"}, {http.MethodPut, "Flag?patient=x"},
	} {
		t.Run(tc.method+"-"+tc.path+"-405", func(t *testing.T) {
			r := e.do(tc.method, tc.path, la, `{"resourceType":"Flag"}`)
			assert.Equal(t, http.StatusMethodNotAllowed, r.Code)
			assert.Equal(t, "METHOD_NOT_ALLOWED", r.code())
		})
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		la := e.laToken(la1)
		e.putPlan(planSpec{id: "p1", nhs: nhsA, la: la1})
		good := planJSON(planSpec{id: "p1", nhs: nhsB, la: la1, planType: "LAC"})
		cases := []struct {
			name   string
			body   string
			status int
			issues []string
		}{
			{"malformed-json-400", `{"resourceType":"EpisodeOfCare",`, 400, []string{"INVALID_VALUE@"}},
			{"not-an-object-400", `[1,2]`, 400, []string{"INVALID_VALUE@"}},
			{"wrong-type-400", `{"resourceType":"Patient","id":"p1"}`, 400, []string{"INVALID_VALUE@resourceType"}},
			{"unknown-elements-400", strings.Replace(good, `"status"`, `"colour":"red","size":2,"status"`, 1), 400,
				[]string{"INVALID_VALUE@EpisodeOfCare.colour", "INVALID_VALUE@EpisodeOfCare.size"}},
			{"bad-nhs-number-422", planJSON(planSpec{id: "p1", nhs: "9449306754", la: la1}), 422,
				[]string{"VALIDATION_ERROR@EpisodeOfCare.patient.identifier.value"}},
			{"wrong-plan-code-422", planJSON(planSpec{id: "p1", nhs: nhsA, la: la1, planType: "XYZ"}), 422,
				[]string{"VALIDATION_ERROR@EpisodeOfCare.type[0].coding[0].code"}},
			{"every-problem-at-once-422", strings.Replace(planJSON(planSpec{id: "p1", nhs: "123", la: la1, planType: "XYZ"}), `"period":{"start":"2026-01-10"}`, `"period":{"end":"2026-01-10"}`, 1), 422,
				[]string{"VALIDATION_ERROR@EpisodeOfCare.type[0].coding[0].code", "VALIDATION_ERROR@EpisodeOfCare.patient.identifier.value", "VALIDATION_ERROR@EpisodeOfCare.period.start"}},
			{"bad-status-code-400", strings.Replace(good, `"status":"active"`, `"status":"bogus"`, 1), 400, []string{"INVALID_VALUE@EpisodeOfCare.status"}},
			{"bad-date-400", strings.Replace(good, `"start":"2026-01-10"`, `"start":"2026-13-45"`, 1), 400, []string{"INVALID_VALUE@EpisodeOfCare.period.start"}},
			{"id-mismatch-400", planJSON(planSpec{id: "other", nhs: nhsA, la: la1}), 400, []string{"INVALID_VALUE@EpisodeOfCare.id"}},
			{"unknown-profile-422", strings.Replace(good, `"status"`, `"meta":{"profile":["https://example.org/x"]},"status"`, 1), 422, []string{"VALIDATION_ERROR@EpisodeOfCare.meta.profile[0]"}},
			{"script-in-narrative-422", strings.Replace(good, `"status"`, `"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><script>alert(1)</script></div>"},"status"`, 1), 422, []string{"VALIDATION_ERROR@EpisodeOfCare.text.div"}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r := e.do(http.MethodPut, "EpisodeOfCare/p1", la, tc.body)
				require.Equal(t, tc.status, r.Code, r.Body.String())
				assert.Equal(t, tc.issues, r.issues())
				// nothing changed
				cur := e.do(http.MethodGet, "EpisodeOfCare/p1", la, "")
				require.Equal(t, http.StatusOK, cur.Code)
				assert.Equal(t, `W/"1"`, cur.Header().Get("ETag"))
			})
		}
	})
}

func TestOrganization(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		r := e.do(http.MethodPut, "Organization/org1", e.laToken(la1), orgJSON("org1", la1, "Local Authority One"))
		require.Equal(t, http.StatusCreated, r.Code, r.Body.String())

		t.Run("other-la-403", func(t *testing.T) {
			r := e.do(http.MethodPut, "Organization/org2", e.laToken(la2), orgJSON("org2", la1, "Impostor"))
			assert.Equal(t, http.StatusForbidden, r.Code)
			assert.Equal(t, "ACCESS_DENIED", r.code())
		})
		t.Run("missing-emergency-contact-422", func(t *testing.T) {
			body := orgJSON("org1", la1, "Local Authority One")
			i := strings.Index(body, `,
	  {"purpose":{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/la-contact-purpose","code":"emergency-duty-team"}]}`)
			body = body[:i] + "]}"
			r := e.do(http.MethodPut, "Organization/org1", e.laToken(la1), body)
			require.Equal(t, http.StatusUnprocessableEntity, r.Code, r.Body.String())
			assert.Equal(t, []string{"VALIDATION_ERROR@Organization.contact"}, r.issues())
		})
		t.Run("second-org-for-one-ods-code-412", func(t *testing.T) {
			r := e.do(http.MethodPut, "Organization/org3", e.laToken(la1), orgJSON("org3", la1, "Duplicate"))
			assert.Equal(t, http.StatusPreconditionFailed, r.Code, r.Body.String())
		})
		t.Run("search-by-identifier", func(t *testing.T) {
			r := e.do(http.MethodGet, "Organization?identifier=https://fhir.nhs.uk/Id/ods-organization-code|"+la1, e.nurse(), "")
			require.Equal(t, http.StatusOK, r.Code)
			assert.Equal(t, 1, r.total())
			r = e.do(http.MethodGet, "Organization?identifier=https://fhir.nhs.uk/Id/ods-organization-code|"+la1, e.laToken(la2), "")
			assert.Equal(t, 0, r.total(), "an LA sees only its own Organization")
		})
		t.Run("read", func(t *testing.T) {
			assert.Equal(t, http.StatusOK, e.do(http.MethodGet, "Organization/org1", e.nurse(), "").Code)
			assert.Equal(t, http.StatusOK, e.do(http.MethodGet, "Organization/org1", e.laToken(la1), "").Code)
			assert.Equal(t, http.StatusNotFound, e.do(http.MethodGet, "Organization/org1", e.laToken(la2), "").Code, "another LA's is not found, as a missing id")
		})
	})
}

func TestConditionalUpdate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		la := e.laToken(la1)
		cond := "EpisodeOfCare?identifier=https://la001.example/plan-id|P-1"
		body := planJSON(planSpec{nhs: nhsA, la: la1, ident: "P-1"})

		r := e.do(http.MethodPut, cond, la, body)
		require.Equal(t, http.StatusCreated, r.Code, r.Body.String())
		id := jpath[string](t, r.json(), "id")
		r = e.do(http.MethodPut, cond, la, planJSON(planSpec{nhs: nhsA, la: la1, ident: "P-1", planType: "LAC"}))
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		assert.Equal(t, id, r.json()["id"])
		assert.Equal(t, `W/"2"`, r.Header().Get("ETag"))

		t.Run("body-without-the-identifier-400", func(t *testing.T) {
			r := e.do(http.MethodPut, cond, la, planJSON(planSpec{nhs: nhsA, la: la1, ident: "OTHER"}))
			assert.Equal(t, http.StatusBadRequest, r.Code)
		})
		t.Run("same-identifier-other-la-201", func(t *testing.T) {
			// Identifiers are unique per local authority: another LA's plan
			// with the same identifier is its own, and LA001's is untouched.
			other := strings.ReplaceAll(body, la1, la2)
			other = strings.Replace(other, "https://la002.example/plan-id", "https://la001.example/plan-id", 1)
			r := e.do(http.MethodPut, cond, e.laToken(la2), other)
			require.Equal(t, http.StatusCreated, r.Code, r.Body.String())
			assert.NotEqual(t, id, r.json()["id"])
			mine := e.do(http.MethodGet, "EpisodeOfCare/"+id, la, "")
			assert.Equal(t, `W/"2"`, mine.Header().Get("ETag"))
			assert.Equal(t, la1, jget(t, mine.json(), "managingOrganization", "identifier", "value"))
		})
		t.Run("not-by-identifier-400", func(t *testing.T) {
			r := e.do(http.MethodPut, "EpisodeOfCare?status=active", la, body)
			assert.Equal(t, http.StatusBadRequest, r.Code)
		})
	})
}

func TestConcurrentConditionalUpdatesLeaveOneResource(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		la := e.laToken(la1)
		cond := "EpisodeOfCare?identifier=https://la001.example/plan-id|RACE"
		const n = 10
		var wg sync.WaitGroup
		codes := make([]int, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				// Each request's content differs (its start date), so each
				// must be applied: unchanged content is not written again.
				start := fmt.Sprintf("2026-01-%02d", i+1)
				r := e.do(http.MethodPut, cond, la, planJSON(planSpec{nhs: nhsA, la: la1, ident: "RACE", start: start}))
				codes[i] = r.Code
			}(i)
		}
		wg.Wait()
		created := 0
		for _, c := range codes {
			require.Contains(t, []int{200, 201}, c)
			if c == 201 {
				created++
			}
		}
		assert.Equal(t, 1, created, "exactly one request created the plan")
		r := e.do(http.MethodGet, "EpisodeOfCare?identifier=https://la001.example/plan-id|RACE", la, "")
		require.Equal(t, http.StatusOK, r.Code)
		assert.Equal(t, 1, r.total(), "ten concurrent conditional PUTs leave one resource")
		r = e.do(http.MethodGet, flagSearch(nhsA), e.nurse(), "")
		assert.Equal(t, 1, r.total(), "and one Flag")
		id := jpath[string](t, r.entries("match")[0], "id")
		r = e.do(http.MethodGet, "EpisodeOfCare/"+id+"/_history", la, "")
		assert.Equal(t, n, r.total(), "every request applied as create or update")
	})
}

func TestCreateWithIfNoneExist(t *testing.T) {
	e := newEnv(t, backends()[0])
	la := e.laToken(la1)
	body := planJSON(planSpec{nhs: nhsA, la: la1, ident: "X"})
	r := e.do(http.MethodPost, "EpisodeOfCare", la, body, "If-None-Exist", "identifier=https://la001.example/plan-id|X")
	require.Equal(t, http.StatusCreated, r.Code, r.Body.String())
	id := jpath[string](t, r.json(), "id")
	r = e.do(http.MethodPost, "EpisodeOfCare", la, body, "If-None-Exist", "identifier=https://la001.example/plan-id|X")
	require.Equal(t, http.StatusOK, r.Code)
	assert.Equal(t, id, r.json()["id"])
	assert.Equal(t, `W/"1"`, r.Header().Get("ETag"), "no second write")
}

func TestFlagStatusFollowsThePeriod(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b) // the clock reads 2026-06-15 10:00 UTC
		e.putPlan(planSpec{id: "ends", nhs: nhsA, la: la1, end: "2026-06-20"})
		e.putPlan(planSpec{id: "ended", nhs: nhsA, la: la1, start: "2025-01-01", end: "2026-01-31"})
		e.putPlan(planSpec{id: "open", nhs: nhsA, la: la1})
		e.putPlan(planSpec{id: "closed", nhs: nhsA, la: la1, status: "finished"})
		status := func() map[string]string {
			r := e.do(http.MethodGet, flagSearch(nhsA), e.nurse(), "")
			require.Equal(t, http.StatusOK, r.Code)
			out := map[string]string{}
			for _, f := range r.entries("match") {
				out[jpath[string](t, f, "id")] = jpath[string](t, f, "status")
			}
			return out
		}
		assert.Equal(t, map[string]string{"ends": "active", "ended": "inactive", "open": "active", "closed": "inactive"}, status())
		// 20 June is the last day of the plan, in England.
		e.clock.Add(5*24*time.Hour + 12*time.Hour) // 2026-06-20 22:00 UTC = 23:00 BST
		assert.Equal(t, "active", status()["ends"])
		e.clock.Add(90 * time.Minute) // 2026-06-21 00:30 BST
		assert.Equal(t, "inactive", status()["ends"])
	})
}

func TestRetentionHidesOldPlans(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b) // 2026-06-15, retention 365 days
		e.putPlan(planSpec{id: "old", nhs: nhsA, la: la1, start: "2024-01-01", end: "2025-06-01"})
		e.putPlan(planSpec{id: "recent", nhs: nhsA, la: la1, start: "2024-01-01", end: "2025-07-01"})
		r := e.do(http.MethodGet, flagSearch(nhsA), e.nurse(), "")
		require.Equal(t, http.StatusOK, r.Code)
		assert.Equal(t, 1, r.total())
		assert.Equal(t, "recent", r.entries("match")[0]["id"])
		assert.Equal(t, http.StatusNotFound, e.do(http.MethodGet, "Flag/old", e.nurse(), "").Code)
		assert.Equal(t, http.StatusOK, e.do(http.MethodGet, "Flag/recent", e.nurse(), "").Code)
	})
}

func TestDataSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	b := backend{name: "sqlite-same-dir", open: func(t testing.TB) store.Store { return openSQLite(t, dir) }}
	e := newEnv(t, b)
	e.putPlan(planSpec{id: "p1", nhs: nhsA, la: la1})
	require.NoError(t, e.store.Close())
	e2 := newEnv(t, b)
	r := e2.do(http.MethodGet, "Flag/p1", e2.nurse(), "")
	assert.Equal(t, http.StatusOK, r.Code, fmt.Sprint(r.Body.String()))
}

// TestUnchangedContentIsNotWrittenAgain: every write (single PUT,
// conditional PUT, Bundle entry) follows one rule: a resource whose content
// and Flag would be identical to the current version's is not written
// again; the answer is 200 with the current version.
func TestUnchangedContentIsNotWrittenAgain(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		la := e.laToken(la1)
		plan := planSpec{id: "u1", nhs: nhsA, la: la1, ident: "U-1"}
		r := e.do(http.MethodPut, "EpisodeOfCare/u1", la, planJSON(plan))
		require.Equal(t, http.StatusCreated, r.Code, r.Body.String())
		e.clock.Add(time.Hour)

		t.Run("put-again-200-same-version", func(t *testing.T) {
			r := e.do(http.MethodPut, "EpisodeOfCare/u1", la, planJSON(plan), "Prefer", "return=OperationOutcome")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Equal(t, `W/"1"`, r.Header().Get("ETag"))
			assert.Contains(t, r.Body.String(), "Unchanged: EpisodeOfCare/u1 version 1")
		})
		t.Run("conditional-put-again-200-same-version", func(t *testing.T) {
			plan := plan
			plan.id = ""
			r := e.do(http.MethodPut, "EpisodeOfCare?identifier=https://la001.example/plan-id|U-1", la, planJSON(plan))
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Equal(t, `W/"1"`, r.Header().Get("ETag"))
		})
		t.Run("if-match-still-checked-412", func(t *testing.T) {
			r := e.do(http.MethodPut, "EpisodeOfCare/u1", la, planJSON(plan), "If-Match", `W/"7"`)
			assert.Equal(t, http.StatusPreconditionFailed, r.Code, r.Body.String())
		})
		r = e.do(http.MethodGet, "EpisodeOfCare/u1/_history", la, "")
		require.Equal(t, http.StatusOK, r.Code)
		assert.Equal(t, 1, r.total(), "no version was added")

		t.Run("changed-content-200-next-version", func(t *testing.T) {
			plan := plan
			plan.planType = "LAC"
			r := e.do(http.MethodPut, "EpisodeOfCare/u1", la, planJSON(plan))
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Equal(t, `W/"2"`, r.Header().Get("ETag"))
		})
	})
}
