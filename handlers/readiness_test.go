package handlers_test

import (
	"context"
	"database/sql"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/handlers"
	"cpis/store"
	"cpis/store/observed"
	"cpis/store/sqlite"
)

// TestHazard_ReadyWhileAuditsFail makes the database refuse access records
// (a trigger on the real SQLite store): once an audited read has failed,
// /readyz answers 503, so a load balancer sends clinicians elsewhere, and
// it is 200 again as soon as a probe write succeeds.
func TestHazard_ReadyWhileAuditsFail(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, backend{name: "sqlite", open: func(t testing.TB) store.Store { return openSQLite(t, dir) }})
	e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
	require.Equal(t, http.StatusOK, e.do(http.MethodGet, "/readyz", "", "").Code)

	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, sqlite.FileName)+"?_pragma=busy_timeout(5000)")
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Exec(`CREATE TRIGGER refuse_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'audit refused for the test'); END`)
	require.NoError(t, err)

	r := e.do(http.MethodGet, flagSearch(nhsA), e.nurse(), "")
	require.Equal(t, http.StatusServiceUnavailable, r.Code)
	assert.Equal(t, http.StatusServiceUnavailable, e.do(http.MethodGet, "/readyz", "", "").Code, "not ready while audits fail")
	assert.Equal(t, http.StatusServiceUnavailable, e.do(http.MethodGet, "/readyz", "", "").Code, "and stays so: the probe write fails too")

	_, err = db.Exec(`DROP TRIGGER refuse_audit`)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, e.do(http.MethodGet, "/readyz", "", "").Code, "ready again once writes succeed")
	assert.Equal(t, http.StatusOK, e.do(http.MethodGet, flagSearch(nhsA), e.nurse(), "").Code)
	assert.Len(t, e.auditOf(nhsA), 1, "the probe left no access record")
}

// TestHazard_ClientGoneIsNotAnOutage: a client that goes away mid-request
// is recorded as 499 at INFO, not as a 503 at ERROR, and is not a store
// error in the metrics; nor is a read of a record that does not exist.
func TestHazard_ClientGoneIsNotAnOutage(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		m := handlers.NewPrometheus("test")
		wrapped := backend{name: b.name, open: func(t testing.TB) store.Store { return observed.Wrap(b.open(t), m.StoreCall) }}
		e := newEnv(t, wrapped, func(d *handlers.Deps) { d.Metrics = m })
		e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})

		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		req := httptest.NewRequest(http.MethodGet, "/FHIR/R4/"+flagSearch(nhsA), nil).WithContext(ctx)
		req.Header.Set("Authorization", "Bearer "+e.nurse())
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, req)
		assert.Equal(t, handlers.StatusClientClosedRequest, w.Code)
		assert.NotContains(t, e.logs.String(), `"level":"ERROR"`, "a client going away is not an error of the server")
		assert.Contains(t, e.logs.String(), `"status":499`)

		r := e.do(http.MethodGet, "Flag/nosuch", e.nurse(), "")
		require.Equal(t, http.StatusNotFound, r.Code)

		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		var storeErrors, requests []string
		for _, line := range strings.Split(rec.Body.String(), "\n") {
			switch {
			case strings.HasPrefix(line, "cpis_store_errors_total{"):
				storeErrors = append(storeErrors, line)
			case strings.HasPrefix(line, "cpis_http_requests_total{"):
				requests = append(requests, line)
			}
		}
		assert.Empty(t, storeErrors, "no store call counted as failed")
		assert.Contains(t, requests, `cpis_http_requests_total{method="GET",route="/FHIR/R4/Flag",status="499"} 1`)
	})
}
