package handlers_test

import (
	"net/http"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/auth"
	"cpis/fhir"
	"cpis/handlers/registry"
	"cpis/store"
)

// TestHazard_NewReadRouteShowsAChildUnaudited adds a read route to the real
// engine, as a later change might, whose handler makes no audit call of its
// own: it only asks the registry's public read API for a Flag. The seam
// must hold: the read is audited, refused with 503 and no data when the
// audit cannot be written, and the route-derived fail-closed list covers
// the route without anyone adding it.
func TestHazard_NewReadRouteShowsAChildUnaudited(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, backend{name: "sqlite", open: func(t testing.TB) store.Store { return openSQLite(t, dir) }})
	e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
	eng := e.engine()

	reg, err := registry.New(registry.Config{Store: e.store, Location: e.deps.Location, RetentionDays: e.deps.RetentionDays,
		Now: e.deps.Now, Log: e.deps.Log, SecurityLog: e.deps.SecurityLog, SubjectKey: e.deps.SubjectKey})
	require.NoError(t, err)
	const route = "/FHIR/R4/Flag/:id/_unaudited"
	deny := func(c *gin.Context, err error) { c.AbortWithStatus(http.StatusUnauthorized) }
	eng.GET(route, auth.Middleware(e.deps.Verifier, deny), func(c *gin.Context) {
		who := registry.Caller{P: auth.FromContext(c), RequestID: "seam-test", Route: c.FullPath()}
		rec, err := reg.Read(c.Request.Context(), who, "Flag", c.Param("id"))
		switch fe := fhir.As(err); {
		case err == nil:
			c.Data(http.StatusOK, fhir.MIME, rec.Body)
		case fe != nil && fe.Kind == fhir.KindUnavailable:
			c.Status(http.StatusServiceUnavailable)
		default:
			c.Status(http.StatusBadRequest)
		}
	})

	covered := false
	for _, rd := range patientReads(t, eng) {
		covered = covered || rd.path == "Flag/a1/_unaudited"
	}
	assert.True(t, covered, "the fail-closed test's routes, derived from the engine, include the new route")

	r := e.do(http.MethodGet, "Flag/a1/_unaudited", e.nurse(), "")
	require.Equal(t, http.StatusOK, r.Code, r.Body.String())
	assert.Contains(t, r.Body.String(), nhsA, "the new route served the Flag")
	recs := e.auditOf(nhsA)
	require.Len(t, recs, 1, "and the registry audited it, though the route never asked")
	assert.Equal(t, []string{la1}, recs[0].Owners)

	restore := refuseAudit(t, dir)
	defer restore()
	r = e.do(http.MethodGet, "Flag/a1/_unaudited", e.nurse(), "")
	assert.Equal(t, http.StatusServiceUnavailable, r.Code, "no audit, no record")
	assert.NotContains(t, r.Body.String(), nhsA)

	r = e.do(http.MethodGet, "Flag/a1/_unaudited", e.gp(), "")
	assert.Equal(t, http.StatusBadRequest, r.Code, "a GP may read only silently: the registry checks the permission itself")
	assert.Equal(t, 1, len(e.auditOf(nhsA)), "the refused reads were not audited")
}
