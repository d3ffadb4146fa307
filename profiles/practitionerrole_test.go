package profiles_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/fhir"
	"cpis/profiles"
)

func nurseAccess(id, nhs string, at time.Time) profiles.Access {
	return profiles.Access{ID: id, Recorded: at, Interaction: "search-type", Query: "CareTeam?patient:identifier=x",
		NHSNumber: nhs, Results: 1, UserName: "Dr Jane Smith", UserID: "555021935107", RoleID: "555021936109",
		RoleName: `"Clinical":"Clinical Provision":"Nurse Access Role"`, RoleCode: "S8000:G8000:R8001",
		OrgCode: "RBA", OrgName: "Somerset NHS Foundation Trust", TraceID: "6f1c0b1e-0000-4000-8000-000000000001"}
}

type renderedRole struct {
	ResourceType string                 `json:"resourceType"`
	ID           string                 `json:"id"`
	Identifier   []fhir.Identifier      `json:"identifier"`
	Practitioner fhir.Reference         `json:"practitioner"`
	Organization fhir.Reference         `json:"organization"`
	Code         []fhir.CodeableConcept `json:"code"`
}

type renderedAgents struct {
	Agent []struct {
		Who   fhir.Reference         `json:"who"`
		AltID string                 `json:"altId"`
		Role  []fhir.CodeableConcept `json:"role"`
	} `json:"agent"`
}

func conformance(t *testing.T) (*profiles.Catalog, *fhir.Codec) {
	t.Helper()
	codec, err := fhir.NewCodec()
	require.NoError(t, err)
	london, err := time.LoadLocation("Europe/London")
	require.NoError(t, err)
	cat, err := profiles.Load(london)
	require.NoError(t, err)
	return cat, codec
}

// conforms checks that body is valid R4 (google/fhir) and valid against
// the server's profile of its type.
func conforms(t *testing.T, cat *profiles.Catalog, codec *fhir.Codec, body []byte) {
	t.Helper()
	res, issues := codec.Decode(body)
	require.NotNil(t, res, "%s", body)
	assert.Empty(t, issues, "valid R4: %s", body)
	assert.NotEmpty(t, cat.ProfileOf(res.Type))
	assert.Empty(t, cat.Validate(res), "valid CP-IS %s: %s", res.Type, body)
}

// The PractitionerRole of an access names the person, role and
// organisation as the national CP-IS API's access history does.
func TestPractitionerRoleForAnAccess(t *testing.T) {
	cat, codec := conformance(t)
	at := time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)
	id, body := profiles.PractitionerRoleFor(nurseAccess("a1", "9449306753", at))
	conforms(t, cat, codec, body)
	var pr renderedRole
	require.NoError(t, json.Unmarshal(body, &pr))
	assert.Equal(t, renderedRole{
		ResourceType: "PractitionerRole", ID: id,
		Identifier:   []fhir.Identifier{{System: fhir.SDSRoleSystem, Value: "555021936109"}},
		Practitioner: fhir.Reference{Type: "Practitioner", Identifier: &fhir.Identifier{System: fhir.SDSUserSystem, Value: "555021935107"}, Display: "Dr Jane Smith"},
		Organization: fhir.Reference{Type: "Organization", Identifier: &fhir.Identifier{System: fhir.ODSSystem, Value: "RBA"}, Display: "Somerset NHS Foundation Trust"},
		Code: []fhir.CodeableConcept{{Coding: []fhir.Coding{{System: profiles.JobRoleCodeSystem, Code: "S8000:G8000:R8001", Display: "Nurse Access Role"}},
			Text: `"Clinical":"Clinical Provision":"Nurse Access Role"`}},
	}, pr)

	t.Run("one-per-person-role-and-organisation", func(t *testing.T) {
		again, body2 := profiles.PractitionerRoleFor(nurseAccess("a2", "9434765919", at.Add(48*time.Hour)))
		assert.Equal(t, id, again, "another access by the same person in the same role")
		assert.Equal(t, string(body), string(body2))
		for name, change := range map[string]func(*profiles.Access){
			"another-user":         func(a *profiles.Access) { a.UserID = "555021935108" },
			"another-role":         func(a *profiles.Access) { a.RoleID = "555021936110" },
			"another-organisation": func(a *profiles.Access) { a.OrgCode = "RBB" },
		} {
			a := nurseAccess("a3", "9449306753", at)
			change(&a)
			other, _ := profiles.PractitionerRoleFor(a)
			assert.NotEqual(t, id, other, name)
		}
	})
	t.Run("a-system-has-none", func(t *testing.T) {
		a := nurseAccess("a4", "9449306753", at)
		a.System = true
		id, body := profiles.PractitionerRoleFor(a)
		assert.Empty(t, id)
		assert.Nil(t, body)
	})
	t.Run("without-role-details", func(t *testing.T) {
		a := nurseAccess("a5", "9449306753", at)
		a.RoleID, a.RoleName, a.RoleCode, a.OrgName, a.UserName = "", "", "", "", ""
		_, body := profiles.PractitionerRoleFor(a)
		conforms(t, cat, codec, body)
	})
}

// An AuditEvent linked for the national access history references its
// PractitionerRole from the user's agent, stays valid, and old stored
// AuditEvents (before the role code was recorded) link the same way.
func TestLinkPractitionerRole(t *testing.T) {
	cat, codec := conformance(t)
	at := time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)
	withCode := nurseAccess("a1", "9449306753", at)
	old := withCode
	old.RoleCode = "" // what the server recorded before it kept the role code
	redacted, err := profiles.RedactAuditEvent(profiles.AuditEvent(withCode), func(string) string { return "CareTeam?" })
	require.NoError(t, err)
	wantID, _ := profiles.PractitionerRoleFor(withCode)

	for name, stored := range map[string][]byte{
		"new":      profiles.AuditEvent(withCode),
		"old":      profiles.AuditEvent(old),
		"redacted": redacted,
	} {
		t.Run(name, func(t *testing.T) {
			conforms(t, cat, codec, stored)
			linked, id, role, err := profiles.LinkPractitionerRole(stored)
			require.NoError(t, err)
			assert.Equal(t, wantID, id, "one PractitionerRole per person, whatever the AuditEvent recorded")
			conforms(t, cat, codec, linked)
			conforms(t, cat, codec, role)

			var ae renderedAgents
			require.NoError(t, json.Unmarshal(linked, &ae))
			require.Len(t, ae.Agent, 2)
			assert.Equal(t, fhir.Reference{Reference: "PractitionerRole/" + id, Type: "PractitionerRole",
				Identifier: &fhir.Identifier{System: fhir.SDSRoleSystem, Value: "555021936109"}, Display: "Dr Jane Smith"}, ae.Agent[0].Who)
			assert.Equal(t, "RBA", ae.Agent[1].Who.Identifier.Value, "the organisation agent is unchanged")

			var pr renderedRole
			require.NoError(t, json.Unmarshal(role, &pr))
			assert.Equal(t, id, pr.ID)
			assert.Equal(t, "555021935107", pr.Practitioner.Identifier.Value)
			assert.Equal(t, "Dr Jane Smith", pr.Practitioner.Display)
			assert.Equal(t, "RBA", pr.Organization.Identifier.Value)
			assert.Equal(t, "Somerset NHS Foundation Trust", pr.Organization.Display)
			require.Len(t, pr.Code, 1)
			assert.Equal(t, withCode.RoleName, pr.Code[0].Text)
			if name == "old" {
				assert.Empty(t, pr.Code[0].Coding, "an old AuditEvent has no role code to give")
			} else {
				require.Len(t, pr.Code[0].Coding, 1)
				assert.Equal(t, "S8000:G8000:R8001", pr.Code[0].Coding[0].Code)
			}
		})
	}
	t.Run("new-records-the-role-code", func(t *testing.T) {
		var ae renderedAgents
		require.NoError(t, json.Unmarshal(profiles.AuditEvent(withCode), &ae))
		assert.Equal(t, []fhir.CodeableConcept{{Coding: []fhir.Coding{{System: profiles.JobRoleCodeSystem, Code: "S8000:G8000:R8001", Display: "Nurse Access Role"}},
			Text: withCode.RoleName}}, ae.Agent[0].Role)
		assert.Equal(t, fhir.Reference{Type: "Practitioner", Identifier: &fhir.Identifier{System: fhir.SDSUserSystem, Value: "555021935107"}, Display: "Dr Jane Smith"},
			ae.Agent[0].Who, "the stored AuditEvent still names the person as before")
	})
	t.Run("a-system-access-is-unchanged", func(t *testing.T) {
		sys := withCode
		sys.System = true
		stored := profiles.AuditEvent(sys)
		linked, id, role, err := profiles.LinkPractitionerRole(stored)
		require.NoError(t, err)
		assert.Equal(t, string(stored), string(linked))
		assert.Empty(t, id)
		assert.Nil(t, role)
	})
	t.Run("not-an-audit-event", func(t *testing.T) {
		_, _, _, err := profiles.LinkPractitionerRole([]byte(`{"agent":7}`))
		assert.Error(t, err)
	})
}
