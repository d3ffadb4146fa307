package handlers_test

// Routing: unknown methods and paths.
// Each test failed on the code before its fix (from the security and
// contract review; the Finding numbers are the review's).

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/handlers"
)

// Finding 8: the request method went as sent into the Prometheus labels and
// the access log. HTTP lets a client invent any method token, so anyone,
// without a token, could make the server keep a new counter and histogram
// for every request (unbounded memory), and put what they liked, an NHS
// number included, into the access log's method field. Methods the server
// does not know are now counted and logged as OTHER.
func TestUnknownMethodsDoNotGrowMetricsOrReachTheLog(t *testing.T) {
	m := handlers.NewPrometheus("test")
	e := newEnv(t, backends()[0], func(d *handlers.Deps) { d.Metrics, d.MetricsHandler = m, m.Handler() })
	for i := 0; i < 200; i++ {
		r := e.do(fmt.Sprintf("X%03d", i), "Flag", "", "")
		require.Equal(t, http.StatusMethodNotAllowed, r.Code, r.Body.String())
	}
	r := e.do(nhsA, "Flag", "", "")
	require.Equal(t, http.StatusMethodNotAllowed, r.Code)

	r = e.do(http.MethodGet, "/metrics", "", "")
	require.Equal(t, http.StatusOK, r.Code)
	series := 0
	for _, line := range strings.Split(r.Body.String(), "\n") {
		if strings.HasPrefix(line, "cpis_http_requests_total{") {
			series++
		}
	}
	assert.LessOrEqual(t, series, 5, "one series per known method, route and status, not per invented method")
	assert.NotContains(t, r.Body.String(), "X199")
	assert.NotContains(t, e.logs.String(), "X199", "invented methods are not logged as sent")
}

// Finding 9: gin's default redirect of a path with a trailing slash answered
// 301 (307 for writes) with an HTML body, breaking "JSON only" and the
// rule that every answer under the FHIR base is FHIR (e.do checks it). Such
// paths now get the 404 OperationOutcome of any unknown endpoint.
func TestTrailingSlashIsNotAnHTMLRedirect(t *testing.T) {
	e := newEnv(t, backends()[0])
	e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
	for _, path := range []string{"/FHIR/R4/Flag/a1/", "/FHIR/R4/Flag/a1/_history/"} {
		r := e.do(http.MethodGet, path, e.nurse(), "")
		assert.Equal(t, http.StatusNotFound, r.Code, r.Body.String())
		assert.Equal(t, "RESOURCE_NOT_FOUND", r.code())
	}
	r := e.do(http.MethodPut, "/FHIR/R4/EpisodeOfCare/a1/", e.laToken(la1), planJSON(planSpec{id: "a1", nhs: nhsA, la: la1}))
	assert.Equal(t, http.StatusNotFound, r.Code, r.Body.String())
}
