package profiles

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"cpis/fhir"
)

const (
	// PractitionerRoleProfile is the profile of the PractitionerRoles
	// included with the access history.
	PractitionerRoleProfile = Base + "/StructureDefinition/CPIS-PractitionerRole"
	// JobRoleCodeSystem is the SDS job role code system: the CIS2
	// role_code (S…:G…:R…) of the role a user acted in.
	JobRoleCodeSystem = "https://fhir.nhs.uk/CodeSystem/NHSDigital-SDS-JobRoleCode"
)

// practitionerRole is the PractitionerRole of a person who accessed a
// child's records, as the national CP-IS API includes it with the access
// history.
type practitionerRole struct {
	ResourceType string                 `json:"resourceType"`
	ID           string                 `json:"id"`
	Meta         fhir.Meta              `json:"meta"`
	Identifier   []fhir.Identifier      `json:"identifier,omitempty"`
	Practitioner fhir.Reference         `json:"practitioner"`
	Organization fhir.Reference         `json:"organization"`
	Code         []fhir.CodeableConcept `json:"code,omitempty"`
}

// PractitionerRoleID is the id of the PractitionerRole of a user acting
// in a role for an organisation: stable, so every access by one person in
// one role includes one PractitionerRole, and different for another user,
// role or organisation.
func PractitionerRoleID(userID, roleID, orgCode string) string {
	sum := sha256.Sum256([]byte(userID + "\x00" + roleID + "\x00" + orgCode))
	return "pr-" + hex.EncodeToString(sum[:16])
}

// PractitionerRoleFor renders the PractitionerRole of the user who made an
// access: the practitioner by SDS user id and name, the role by SDS role
// profile id, role code and name, the organisation by ODS code and name.
// An access by a local authority system has none: id "" and a nil body.
func PractitionerRoleFor(a Access) (id string, body []byte) {
	if a.System {
		return "", nil
	}
	pr := practitionerRole{
		ResourceType: "PractitionerRole",
		ID:           PractitionerRoleID(a.UserID, a.RoleID, a.OrgCode),
		Meta:         fhir.Meta{Profile: []string{PractitionerRoleProfile}},
		Practitioner: fhir.Reference{Type: "Practitioner", Identifier: &fhir.Identifier{System: fhir.SDSUserSystem, Value: a.UserID}, Display: a.UserName},
		Organization: fhir.Reference{Type: "Organization", Identifier: &fhir.Identifier{System: fhir.ODSSystem, Value: a.OrgCode}, Display: a.OrgName},
	}
	if a.RoleID != "" {
		pr.Identifier = []fhir.Identifier{{System: fhir.SDSRoleSystem, Value: a.RoleID}}
	}
	if role := roleConcept(a.RoleCode, a.RoleName); role != nil {
		pr.Code = []fhir.CodeableConcept{*role}
	}
	b, err := fhir.Marshal(&pr)
	if err != nil {
		panic("profiles: encoding PractitionerRole: " + err.Error())
	}
	return pr.ID, b
}

// LinkPractitionerRole re-renders a stored AuditEvent for an answer that
// includes PractitionerRoles (the national API's access history,
// _include=AuditEvent:agent): the user's agent.who references
// PractitionerRole/{id} (identified by the SDS role profile id, the user's
// name as display; the SDS user id is in the PractitionerRole), and the
// PractitionerRole is returned with it. Every AuditEvent the server has
// stored can be linked, whether or not it recorded the role code. An access
// by a local authority system is returned unchanged, with id "" and no
// PractitionerRole.
func LinkPractitionerRole(stored []byte) (linked []byte, id string, role []byte, err error) {
	var e auditEvent
	if err := json.Unmarshal(stored, &e); err != nil {
		return nil, "", nil, fmt.Errorf("profiles: decoding a stored AuditEvent: %w", err)
	}
	user := -1
	var a Access
	for i, ag := range e.Agent {
		switch {
		case ag.Type.Has(roleClassSystem, "ASSIGNED") && ag.Who != nil && ag.Who.Identifier != nil && user < 0:
			user = i
			a.UserID, a.UserName, a.RoleID = ag.Who.Identifier.Value, ag.Who.Display, ag.AltID
			if a.UserName == "" {
				a.UserName = ag.Name
			}
			for _, r := range ag.Role {
				a.RoleName = r.Text
				for _, c := range r.Coding {
					if c.System == JobRoleCodeSystem {
						a.RoleCode = c.Code
					}
				}
			}
		case ag.Type.Has(roleClassSystem, "PROV") && ag.Who != nil && ag.Who.Identifier != nil:
			a.OrgCode, a.OrgName = ag.Who.Identifier.Value, ag.Who.Display
		}
	}
	if user < 0 {
		return stored, "", nil, nil
	}
	id, role = PractitionerRoleFor(a)
	who := &fhir.Reference{Reference: "PractitionerRole/" + id, Type: "PractitionerRole",
		Identifier: &fhir.Identifier{System: fhir.SDSRoleSystem, Value: a.RoleID}, Display: a.UserName}
	if a.RoleID == "" {
		// No role profile id to identify the role by: keep the person's.
		who.Identifier = e.Agent[user].Who.Identifier
	}
	e.Agent[user].Who = who
	linked, err = fhir.Marshal(&e)
	if err != nil {
		return nil, "", nil, fmt.Errorf("profiles: encoding an AuditEvent: %w", err)
	}
	return linked, id, role, nil
}

// roleConcept is the role a user acted in: the CIS2 role code in the SDS
// job role code system, displayed by the last part of the role name
// ("Clinical":"Clinical Provision":"Nurse Access Role" shows as Nurse
// Access Role), and the role name as given as text.
func roleConcept(code, name string) *fhir.CodeableConcept {
	if code == "" && name == "" {
		return nil
	}
	cc := &fhir.CodeableConcept{Text: name}
	if code != "" {
		cc.Coding = []fhir.Coding{{System: JobRoleCodeSystem, Code: code, Display: roleDisplay(name)}}
	}
	return cc
}

func roleDisplay(name string) string {
	if i := strings.LastIndex(strings.TrimSuffix(name, `"`), `"`); i >= 0 && strings.HasSuffix(name, `"`) {
		return name[i+1 : len(name)-1]
	}
	return name
}
