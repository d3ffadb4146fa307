package registry_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/handlers/registry"
	"cpis/profiles"
	"cpis/store"
)

// WithRoles links each access to one PractitionerRole per person, role and
// organisation, in the order first met, and leaves an access by a local
// authority system (which has no PractitionerRole) as it was.
func TestWithRoles(t *testing.T) {
	at := time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)
	access := func(id, user string, system bool) store.AuditRecord {
		a := profiles.Access{ID: id, Recorded: at, Interaction: "search-type", Query: "Flag?x", NHSNumber: nhsA, Results: 1,
			System: system, UserName: "Nurse " + user, UserID: user, RoleID: "R" + user, RoleName: "Nurse", RoleCode: "S8000:G8000:R8001",
			OrgCode: "RBA", OrgName: "Somerset NHS Foundation Trust"}
		if system {
			a.UserID, a.OrgCode, a.OrgName = "client-LA001", "LA001", "Local Authority LA001"
		}
		return store.AuditRecord{ID: id, Recorded: at, Subject: nhsA, Body: profiles.AuditEvent(a)}
	}
	recs := []store.AuditRecord{access("a1", "u1", false), access("a2", "u2", false), access("a3", "u1", false), access("a4", "", true)}
	linked, roles, err := registry.WithRoles(recs)
	require.NoError(t, err)
	require.Len(t, linked, 4)
	require.Len(t, roles, 2, "two people, one PractitionerRole each")
	for i, who := range []string{"u1", "u2"} {
		id, body := profiles.PractitionerRoleFor(profiles.Access{UserID: who, RoleID: "R" + who, OrgCode: "RBA"})
		assert.Equal(t, id, roles[i].ID)
		assert.Equal(t, "PractitionerRole", roles[i].Type)
		assert.NotEqual(t, body, roles[i].Body, "rendered with the name and role the AuditEvent shows")
		assert.Contains(t, string(roles[i].Body), "Nurse "+who)
	}
	refs := make([]string, 0, 3)
	for _, rec := range linked[:3] {
		var e struct {
			Agent []struct {
				Who struct{ Reference string } `json:"who"`
			} `json:"agent"`
		}
		require.NoError(t, json.Unmarshal(rec.Body, &e))
		refs = append(refs, e.Agent[0].Who.Reference)
	}
	assert.Equal(t, []string{"PractitionerRole/" + roles[0].ID, "PractitionerRole/" + roles[1].ID, "PractitionerRole/" + roles[0].ID}, refs)
	assert.Equal(t, string(recs[3].Body), string(linked[3].Body), "a system's access is unchanged")
	assert.Equal(t, "a4", linked[3].ID)
}
