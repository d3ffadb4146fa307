package handlers_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const jsonPatch = "application/json-patch+json"

func (e *env) patch(path, token, body string, headers ...string) resp {
	e.t.Helper()
	return e.do(http.MethodPatch, path, token, body, append([]string{"Content-Type", jsonPatch}, headers...)...)
}

// planAt reads a plan as its LA and returns its version and body.
func (e *env) planAt(la, id string) (string, map[string]any) {
	e.t.Helper()
	r := e.do(http.MethodGet, "EpisodeOfCare/"+id, e.laToken(la), "")
	require.Equal(e.t, http.StatusOK, r.Code, r.Body.String())
	return r.Header().Get("ETag"), r.json()
}

// TestPatch: JSON Patch on EpisodeOfCare and Organization goes through the
// one write path: validated like a PUT, pinned to a version, owned by the
// local authority; each refusal leaves the store as it was.
func TestPatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putOrg("org1", la1, "Somewhere Council")
		e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
		la := e.laToken(la1)

		t.Run("patch-200", func(t *testing.T) {
			r := e.patch("EpisodeOfCare/a1", la, `[{"op":"test","path":"/status","value":"active"},{"op":"add","path":"/period/end","value":"2026-12-31"}]`, "If-Match", `W/"1"`)
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Equal(t, `W/"2"`, r.Header().Get("ETag"))
			assert.Equal(t, "2026-12-31", jpath[string](t, r.json(), "period", "end"))
			tag, plan := e.planAt(la1, "a1")
			assert.Equal(t, `W/"2"`, tag)
			assert.Equal(t, "2026-12-31", jpath[string](t, plan, "period", "end"))
			// The Flag is derived again, in the same write.
			f := e.do(http.MethodGet, "Flag/a1", e.nurse(), "")
			require.Equal(t, http.StatusOK, f.Code)
			assert.Equal(t, "2026-12-31", jpath[string](t, f.json(), "period", "end"))
		})
		t.Run("stale-if-match-412", func(t *testing.T) {
			r := e.patch("EpisodeOfCare/a1", la, `[{"op":"replace","path":"/period/end","value":"2027-01-31"}]`, "If-Match", `W/"1"`)
			require.Equal(t, http.StatusPreconditionFailed, r.Code, r.Body.String())
			assert.Equal(t, "PRECONDITION_FAILED", r.code())
			tag, plan := e.planAt(la1, "a1")
			assert.Equal(t, `W/"2"`, tag, "nothing written")
			assert.Equal(t, "2026-12-31", jpath[string](t, plan, "period", "end"))
		})
		t.Run("breaks-the-profile-422", func(t *testing.T) {
			r := e.patch("EpisodeOfCare/a1", la, `[{"op":"replace","path":"/type/0/coding/0/code","value":"XYZ"},{"op":"remove","path":"/period/start"}]`)
			require.Equal(t, http.StatusUnprocessableEntity, r.Code, r.Body.String())
			assert.GreaterOrEqual(t, len(r.issues()), 2, "every problem: %v", r.issues())
			tag, plan := e.planAt(la1, "a1")
			assert.Equal(t, `W/"2"`, tag, "nothing written")
			assert.Equal(t, "2026-01-10", jpath[string](t, plan, "period", "start"))
		})
		t.Run("moves-the-plan-to-another-la-403", func(t *testing.T) {
			r := e.patch("EpisodeOfCare/a1", la, `[{"op":"replace","path":"/managingOrganization/identifier/value","value":"LA002"}]`)
			require.Equal(t, http.StatusForbidden, r.Code, r.Body.String())
			assert.Equal(t, "ACCESS_DENIED", r.code())
			tag, plan := e.planAt(la1, "a1")
			assert.Equal(t, `W/"2"`, tag, "nothing written")
			assert.Equal(t, la1, jpath[string](t, plan, "managingOrganization", "identifier", "value"))
			assert.Equal(t, http.StatusNotFound, e.do(http.MethodGet, "EpisodeOfCare/a1", e.laToken(la2), "").Code)
		})
		t.Run("another-las-plan-404", func(t *testing.T) {
			r := e.patch("EpisodeOfCare/a1", e.laToken(la2), `[{"op":"replace","path":"/status","value":"finished"}]`)
			require.Equal(t, http.StatusNotFound, r.Code, r.Body.String())
			tag, _ := e.planAt(la1, "a1")
			assert.Equal(t, `W/"2"`, tag)
		})
		t.Run("missing-404", func(t *testing.T) {
			r := e.patch("EpisodeOfCare/nope", la, `[{"op":"replace","path":"/status","value":"finished"}]`)
			require.Equal(t, http.StatusNotFound, r.Code, r.Body.String())
		})
		t.Run("test-op-fails-422", func(t *testing.T) {
			r := e.patch("EpisodeOfCare/a1", la, `[{"op":"test","path":"/status","value":"finished"},{"op":"replace","path":"/status","value":"finished"}]`)
			require.Equal(t, http.StatusUnprocessableEntity, r.Code, r.Body.String())
			assert.Equal(t, []string{"VALIDATION_ERROR@patch[0]"}, r.issues())
			tag, _ := e.planAt(la1, "a1")
			assert.Equal(t, `W/"2"`, tag)
		})
		t.Run("path-not-there-422", func(t *testing.T) {
			r := e.patch("EpisodeOfCare/a1", la, `[{"op":"remove","path":"/careManager"}]`)
			require.Equal(t, http.StatusUnprocessableEntity, r.Code, r.Body.String())
		})
		t.Run("changes-the-id-400", func(t *testing.T) {
			r := e.patch("EpisodeOfCare/a1", la, `[{"op":"replace","path":"/id","value":"a9"}]`)
			require.Equal(t, http.StatusBadRequest, r.Code, r.Body.String())
		})
		t.Run("wrong-case-key-400", func(t *testing.T) {
			r := e.patch("EpisodeOfCare/a1", la, `[{"op":"add","path":"/Status","value":"finished"}]`)
			require.Equal(t, http.StatusBadRequest, r.Code, r.Body.String())
			tag, _ := e.planAt(la1, "a1")
			assert.Equal(t, `W/"2"`, tag)
		})
		for _, tc := range []struct{ name, body string }{
			{"not-an-array-400", `{"op":"replace","path":"/status","value":"finished"}`},
			{"empty-400", `[]`},
			{"unknown-op-400", `[{"op":"merge","path":"/status","value":"finished"}]`},
			{"no-value-400", `[{"op":"replace","path":"/status"}]`},
			{"bad-path-400", `[{"op":"replace","path":"status","value":"finished"}]`},
			{"duplicate-key-400", `[{"op":"replace","path":"/status","path":"/id","value":"finished"}]`},
			{"not-json-400", `[{"op":`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := e.patch("EpisodeOfCare/a1", la, tc.body)
				require.Equal(t, http.StatusBadRequest, r.Code, r.Body.String())
				assert.Equal(t, "INVALID_VALUE", r.code())
			})
		}
		t.Run("fhirpath-patch-415", func(t *testing.T) {
			r := e.do(http.MethodPatch, "EpisodeOfCare/a1", la, `{"resourceType":"Parameters","parameter":[]}`)
			require.Equal(t, http.StatusUnsupportedMediaType, r.Code, r.Body.String())
			assert.Contains(t, r.Body.String(), "JSON Patch")
		})
		t.Run("health-user-403", func(t *testing.T) {
			r := e.patch("EpisodeOfCare/a1", e.nurse(), `[{"op":"replace","path":"/status","value":"finished"}]`)
			require.Equal(t, http.StatusForbidden, r.Code, r.Body.String())
		})
		t.Run("flag-405", func(t *testing.T) {
			r := e.patch("Flag/a1", la, `[{"op":"replace","path":"/status","value":"inactive"}]`)
			require.Equal(t, http.StatusMethodNotAllowed, r.Code, r.Body.String())
		})
		t.Run("copy-bomb-413", func(t *testing.T) {
			ops := `[{"op":"add","path":"/extension","value":[{"url":"https://x.example","valueString":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}]}`
			for i := 0; i < 20; i++ { // each doubles the resource
				ops += `,{"op":"copy","from":"/extension","path":"/extension/-"}`
			}
			ops += `]`
			r := e.patch("EpisodeOfCare/a1", la, ops)
			require.Equal(t, http.StatusRequestEntityTooLarge, r.Code, r.Body.String())
		})
		t.Run("patch-body-too-large-413", func(t *testing.T) {
			big := `[{"op":"add","path":"/extension","value":[{"url":"https://x.example","valueString":"` + strings.Repeat("x", 1<<20) + `"}]}]`
			r := e.patch("EpisodeOfCare/a1", la, big)
			require.Equal(t, http.StatusRequestEntityTooLarge, r.Code, r.Body.String())
			tag, _ := e.planAt(la1, "a1")
			assert.Equal(t, `W/"2"`, tag)
		})
		t.Run("organization-patch-200", func(t *testing.T) {
			r := e.patch("Organization/org1", la, `[{"op":"replace","path":"/contact/1/telecom/0/value","value":"0300 123 8888"}]`, "If-Match", `W/"1"`)
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Equal(t, "0300 123 8888", jpath[string](t, r.json(), "contact", 1, "telecom", 0, "value"))
			assert.Equal(t, `W/"2"`, r.Header().Get("ETag"))
		})
		t.Run("organization-other-ods-403", func(t *testing.T) {
			r := e.patch("Organization/org1", la, `[{"op":"replace","path":"/identifier/0/value","value":"LA002"}]`)
			require.Equal(t, http.StatusForbidden, r.Code, r.Body.String())
		})
		t.Run("unchanged-200-same-version", func(t *testing.T) {
			r := e.patch("Organization/org1", la, `[{"op":"test","path":"/name","value":"Somewhere Council"}]`)
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Equal(t, `W/"2"`, r.Header().Get("ETag"))
		})
	})
}

// TestPatchInBundleRefused: PATCH entries in a Bundle are refused clearly.
func TestPatchInBundleRefused(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
		bundle := `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"PATCH","url":"EpisodeOfCare/a1"},
			"resource":{"resourceType":"Binary","contentType":"application/json-patch+json","data":"W10="}}]}`
		r := e.post(e.laToken(la1), bundle)
		assert.Contains(t, r.Body.String(), "PATCH entries are not supported in Bundles")
		tag, _ := e.planAt(la1, "a1")
		assert.Equal(t, `W/"1"`, tag)
	})
}

// TestCapabilityStatementNamesTheExtras: what is served is advertised:
// PATCH with its format, conditional reads where a 304 is given, and
// none where it is not.
func TestCapabilityStatementNamesTheExtras(t *testing.T) {
	e := newEnv(t, backends()[0])
	r := e.do(http.MethodGet, "metadata", "", "")
	require.Equal(t, http.StatusOK, r.Code)
	cs := r.json()
	assert.Equal(t, []any{"application/json-patch+json"}, cs["patchFormat"])
	want := map[string]struct {
		patch bool
		cond  string
	}{
		"EpisodeOfCare": {true, "full-support"}, "Organization": {true, "full-support"}, "Flag": {false, "full-support"},
		"CareTeam": {false, "not-supported"}, "StructureDefinition": {false, "not-supported"},
	}
	for _, res := range jpath[[]any](t, cs, "rest", 0, "resource") {
		m := jpath[map[string]any](t, res)
		typ := jpath[string](t, m, "type")
		w, ok := want[typ]
		if !ok {
			continue
		}
		patch := false
		for _, in := range jpath[[]any](t, m, "interaction") {
			if jpath[string](t, in, "code") == "patch" {
				patch = true
			}
		}
		assert.Equal(t, w.patch, patch, typ)
		assert.Equal(t, w.cond, m["conditionalRead"], typ)
	}
}
