package handlers_test

// History and deleted plans: what health users see and what is audited.
// Each test failed on the code before its fix (from the security and
// contract review; the Finding numbers are the review's).

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Finding 2: _history shows every version, and a plan's NHS number can be
// corrected, so the history of one plan can show two patients' records. Only
// the patient of the current version was audited; the earlier patient's
// Flag was shown without an access record or a notification.
func TestHistoryAuditsEveryPatientShown(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: "c1", nhs: nhsB, la: la1})
		e.putPlan(planSpec{id: "c1", nhs: nhsC, la: la1}) // the NHS number corrected
		for _, path := range []string{"Flag/c1/_history", "EpisodeOfCare/c1/_history"} {
			t.Run(path, func(t *testing.T) {
				b0, c0 := len(e.auditOf(nhsB)), len(e.auditOf(nhsC))
				r := e.do(http.MethodGet, path, e.nurse(), "")
				require.Equal(t, http.StatusOK, r.Code, r.Body.String())
				require.Equal(t, 2, r.total())
				assert.Len(t, e.auditOf(nhsB), b0+1, "the earlier patient shown is audited")
				assert.Len(t, e.auditOf(nhsC), c0+1, "the current patient is audited")
			})
		}
	})
}

// Finding 3: a plan deleted as recorded in error ("its Flag goes too") was
// still served to clinicians through _history and vread, so a Flag put on
// the wrong child stayed readable. Health users now get 410 for a deleted
// plan's history and versions, and see only the versions since the last
// delete of a plan written again; the managing local authority keeps its
// full history.
func TestDeletedPlanHiddenFromHealthUsers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		la := e.laToken(la1)
		e.putPlan(planSpec{id: "d1", nhs: nhsB, la: la1})
		require.Equal(t, http.StatusOK, e.do(http.MethodDelete, "EpisodeOfCare/d1", la, "").Code)
		nurse, gp := e.nurse(), e.gp()
		for _, path := range []string{"Flag/d1/_history", "Flag/d1/_history/1", "EpisodeOfCare/d1/_history", "EpisodeOfCare/d1/_history/1"} {
			t.Run("nurse-"+path+"-410", func(t *testing.T) {
				r := e.do(http.MethodGet, path, nurse, "")
				require.Equal(t, http.StatusGone, r.Code, r.Body.String())
				assert.Equal(t, "RESOURCE_NOT_FOUND", r.code())
				assert.NotContains(t, r.Body.String(), nhsB)
			})
			t.Run("gp-silent-"+path+"-403", func(t *testing.T) {
				// A silent read must name the patient: never by id.
				r := e.do(http.MethodGet, path+"?silent=true", gp, "")
				require.Equal(t, http.StatusForbidden, r.Code, r.Body.String())
				assert.NotContains(t, r.Body.String(), nhsB)
			})
		}
		r := e.do(http.MethodGet, "EpisodeOfCare/d1/_history", la, "")
		require.Equal(t, http.StatusOK, r.Code, "the LA keeps its own history")
		assert.Equal(t, 2, r.total())

		// Written again (the right child this time): clinicians see only the
		// versions since the delete.
		e.putPlan(planSpec{id: "d1", nhs: nhsC, la: la1})
		r = e.do(http.MethodGet, "Flag/d1/_history", nurse, "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		assert.Equal(t, 1, r.total())
		assert.NotContains(t, r.Body.String(), nhsB, "the deleted version is not shown")
		r = e.do(http.MethodGet, "Flag/d1/_history/1", nurse, "")
		assert.Equal(t, http.StatusGone, r.Code, "a version before the delete is gone for clinicians")
		r = e.do(http.MethodGet, "Flag/d1/_history/3", nurse, "")
		assert.Equal(t, http.StatusOK, r.Code, r.Body.String())
		r = e.do(http.MethodGet, "EpisodeOfCare/d1/_history/1", la, "")
		assert.Equal(t, http.StatusOK, r.Code, "the LA can still read it")
		assert.Empty(t, e.auditOf(nhsB), "the wrongly named child was never shown to a clinician")
	})
}
