package handlers_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
)

// TestConditionalRead: If-None-Match naming the current version, or
// If-Modified-Since at or after Last-Modified, is 304 with the ETag and no
// body; anything else is the resource.
func TestConditionalRead(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
		e.putOrg("org1", la1, "Somewhere Council")
		la := e.laToken(la1)

		first := e.do(http.MethodGet, "EpisodeOfCare/a1", la, "")
		require.Equal(t, http.StatusOK, first.Code, first.Body.String())
		tag, modified := first.Header().Get("ETag"), first.Header().Get("Last-Modified")
		require.Equal(t, `W/"1"`, tag)
		require.NotEmpty(t, modified)
		before, err := http.ParseTime(modified)
		require.NoError(t, err)

		for _, tc := range []struct {
			name, path string
			headers    []string
			want       int
		}{
			{"if-none-match-current-304", "EpisodeOfCare/a1", []string{"If-None-Match", `W/"1"`}, http.StatusNotModified},
			{"if-none-match-strong-form-304", "EpisodeOfCare/a1", []string{"If-None-Match", `"1"`}, http.StatusNotModified},
			{"if-none-match-list-304", "EpisodeOfCare/a1", []string{"If-None-Match", `W/"7", W/"1"`}, http.StatusNotModified},
			{"if-none-match-star-304", "EpisodeOfCare/a1", []string{"If-None-Match", `*`}, http.StatusNotModified},
			{"if-none-match-other-200", "EpisodeOfCare/a1", []string{"If-None-Match", `W/"2"`}, http.StatusOK},
			{"if-modified-since-same-304", "EpisodeOfCare/a1", []string{"If-Modified-Since", modified}, http.StatusNotModified},
			{"if-modified-since-earlier-200", "EpisodeOfCare/a1", []string{"If-Modified-Since", before.Add(-time.Second).Format(http.TimeFormat)}, http.StatusOK},
			{"if-modified-since-invalid-200", "EpisodeOfCare/a1", []string{"If-Modified-Since", "yesterday"}, http.StatusOK},
			{"if-none-match-wins-over-if-modified-since-200", "EpisodeOfCare/a1", []string{"If-None-Match", `W/"9"`, "If-Modified-Since", modified}, http.StatusOK},
			{"vread-304", "EpisodeOfCare/a1/_history/1", []string{"If-None-Match", `W/"1"`}, http.StatusNotModified},
			{"organization-304", "Organization/org1", []string{"If-None-Match", `W/"1"`}, http.StatusNotModified},
			{"missing-404", "EpisodeOfCare/nope", []string{"If-None-Match", `*`}, http.StatusNotFound},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := e.do(http.MethodGet, tc.path, la, "", tc.headers...)
				require.Equal(t, tc.want, r.Code, r.Body.String())
				if tc.want == http.StatusNotModified {
					assert.Empty(t, r.Body.String(), "a 304 has no body")
					assert.Equal(t, `W/"1"`, r.Header().Get("ETag"))
					assert.NotEmpty(t, r.Header().Get("Last-Modified"))
				}
			})
		}

		// A new version: the old ETag no longer matches.
		p := planJSON(planSpec{id: "a1", nhs: nhsA, la: la1, end: "2026-12-31"})
		require.Equal(t, http.StatusOK, e.do(http.MethodPut, "EpisodeOfCare/a1", la, p).Code)
		r := e.do(http.MethodGet, "EpisodeOfCare/a1", la, "", "If-None-Match", tag)
		require.Equal(t, http.StatusOK, r.Code)
		assert.Equal(t, `W/"2"`, r.Header().Get("ETag"))
	})
}

// TestHazard_NotModifiedIsAnUnauditedAccess: a 304 (and a HEAD) on a
// record about a patient tells the caller it exists, so it is audited
// exactly as the GET, before the answer.
func TestHazard_NotModifiedIsAnUnauditedAccess(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
		for i, tc := range []struct {
			name, method, path string
			headers            []string
			want               int
		}{
			{"flag-304", http.MethodGet, "Flag/a1", []string{"If-None-Match", `W/"1"`}, http.StatusNotModified},
			{"plan-304", http.MethodGet, "EpisodeOfCare/a1", []string{"If-Modified-Since", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)}, http.StatusNotModified},
			{"flag-head", http.MethodHead, "Flag/a1", nil, http.StatusOK},
			{"flag-vread-head", http.MethodHead, "Flag/a1/_history/1", nil, http.StatusOK},
			{"flag-search-head", http.MethodHead, flagSearch(nhsA), nil, http.StatusOK},
			{"careteam-head", http.MethodHead, "CareTeam/a1", nil, http.StatusOK},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := e.do(tc.method, tc.path, e.nurse(), "", tc.headers...)
				require.Equal(t, tc.want, r.Code, r.Body.String())
				assert.Empty(t, r.Body.String())
				assert.Len(t, e.auditOf(nhsA), i+1, "audited like the GET")
			})
		}
	})
}

// TestHazard_EndedFlagServedFromAStaleCache: a Flag turns inactive when its
// plan ends without a new version. A client holding the active Flag must
// not be told by a 304 that it is still current.
func TestHazard_EndedFlagServedFromAStaleCache(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1, end: "2026-06-20"})
		r := e.do(http.MethodGet, "Flag/a1", e.nurse(), "")
		require.Equal(t, http.StatusOK, r.Code)
		require.Equal(t, "active", r.json()["status"])
		tag := r.Header().Get("ETag")
		require.Equal(t, http.StatusNotModified, e.do(http.MethodGet, "Flag/a1", e.nurse(), "", "If-None-Match", tag).Code)

		e.clock.Add(10 * 24 * time.Hour) // the plan has ended
		r = e.do(http.MethodGet, "Flag/a1", e.nurse(), "", "If-None-Match", tag)
		require.Equal(t, http.StatusOK, r.Code, "the cached copy says active; the Flag is inactive now")
		assert.Equal(t, "inactive", r.json()["status"])
		r = e.do(http.MethodGet, "Flag/a1", e.nurse(), "", "If-Modified-Since", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
		require.Equal(t, http.StatusOK, r.Code)
	})
}

// TestCareTeamIsNeverNotModified: a CareTeam is rendered with its
// authority's current numbers, which change without the plan's version.
func TestCareTeamIsNeverNotModified(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putOrg("org1", la1, "Somewhere Council")
		e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
		r := e.do(http.MethodGet, "CareTeam/a1", e.nurse(), "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		r = e.do(http.MethodGet, "CareTeam/a1", e.nurse(), "", "If-None-Match", r.Header().Get("ETag"))
		assert.Equal(t, http.StatusOK, r.Code)
	})
}

// TestHead: every GET route answers HEAD with the GET's status and headers
// and no body; errors too.
func TestHead(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
		la := e.laToken(la1)
		for _, tc := range []struct {
			name, path, token string
			want              int
		}{
			{"read-200", "EpisodeOfCare/a1", la, http.StatusOK},
			{"history-200", "EpisodeOfCare/a1/_history", la, http.StatusOK},
			{"search-200", "EpisodeOfCare?_count=5", la, http.StatusOK},
			{"metadata-200", "metadata", "", http.StatusOK},
			{"structuredefinition-200", "StructureDefinition", la, http.StatusOK},
			{"healthz-200", "/healthz", "", http.StatusOK},
			{"missing-404", "EpisodeOfCare/nope", la, http.StatusNotFound},
			{"other-la-404", "EpisodeOfCare/a1", e.laToken(la2), http.StatusNotFound},
			{"no-token-401", "EpisodeOfCare/a1", "", http.StatusUnauthorized},
		} {
			t.Run(tc.name, func(t *testing.T) {
				get := e.do(http.MethodGet, tc.path, tc.token, "")
				head := e.do(http.MethodHead, tc.path, tc.token, "")
				require.Equal(t, tc.want, head.Code)
				assert.Equal(t, get.Code, head.Code)
				assert.Empty(t, head.Body.String(), "HEAD has no body")
				assert.Equal(t, get.Header().Get("ETag"), head.Header().Get("ETag"))
				assert.Equal(t, get.Header().Get("Content-Type"), head.Header().Get("Content-Type"))
				if tc.want == http.StatusOK && tc.path != "metadata" && tc.path != "/healthz" && tc.path != "StructureDefinition" {
					// the search's timestamp and the bundle's links may
					// differ by a little; the read's length is the GET's.
					n, err := strconv.Atoi(head.Header().Get("Content-Length"))
					require.NoError(t, err)
					assert.InDelta(t, get.Body.Len(), n, 64)
				}
			})
		}
		// HEAD writes nothing.
		recs, err := e.store.History(t.Context(), "EpisodeOfCare", "a1")
		require.NoError(t, err)
		assert.Len(t, recs, 1)
	})
}

// TestHazard_NotModifiedFailsClosed: when the audit cannot be written, a
// conditional read is refused (503) like the GET: never a 304 that tells
// the caller the record exists and is unchanged.
func TestHazard_NotModifiedFailsClosed(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, backend{name: "sqlite", open: func(t testing.TB) store.Store { return openSQLite(t, dir) }})
	e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
	restore := refuseAudit(t, dir)
	for _, h := range [][]string{{"If-None-Match", `W/"1"`}, {"If-Modified-Since", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)}} {
		r := e.do(http.MethodGet, "Flag/a1", e.nurse(), "", h...)
		require.Equal(t, http.StatusServiceUnavailable, r.Code, r.Body.String())
		assert.Equal(t, "SERVICE_UNAVAILABLE", r.code())
		assert.Empty(t, r.Header().Get("ETag"), "no version of the record is told")
	}
	restore()
	assert.Equal(t, http.StatusNotModified, e.do(http.MethodGet, "Flag/a1", e.nurse(), "", "If-None-Match", `W/"1"`).Code)
	assert.Len(t, e.auditOf(nhsA), 1)
}
