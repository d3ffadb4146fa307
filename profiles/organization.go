package profiles

import (
	"encoding/json"
	"fmt"

	"cpis/fhir"
)

// LA is what the server keeps of a local authority Organization.
type LA struct {
	ID   string
	ODS  string
	Name string
}

type organization struct {
	Meta       *fhir.Meta        `json:"meta"`
	Text       *narrative        `json:"text"`
	Contained  []json.RawMessage `json:"contained"`
	Identifier []fhir.Identifier `json:"identifier"`
	Name       string            `json:"name"`
	Contact    []struct {
		Purpose *fhir.CodeableConcept `json:"purpose"`
		Telecom []fhir.ContactPoint   `json:"telecom"`
	} `json:"contact"`
}

// ParseLA applies the CP-IS Organization profile: one ODS identifier, a name,
// and an office-hours and an emergency-duty-team contact, each with a phone
// number. It returns every rule the resource breaks.
func ParseLA(res *fhir.Resource) (*LA, []fhir.Issue) {
	const t = "Organization"
	var o organization
	if err := json.Unmarshal(res.Body, &o); err != nil {
		return nil, nil
	}
	var v issues
	v.profile(t, OrganizationProfile, o.Meta)
	v.narrative(t, o.Text)
	if len(o.Contained) > 0 {
		v.add(t+".contained", "Contained resources are not accepted")
	}
	la := &LA{ID: res.ID(), Name: o.Name}
	for i, id := range o.Identifier {
		if id.System != fhir.ODSSystem {
			continue
		}
		path := fmt.Sprintf("%s.identifier[%d].value", t, i)
		switch {
		case la.ODS != "":
			v.add(path, "Only one ODS code is allowed")
		case !fhir.ValidODSCode(id.Value):
			v.add(path, "Invalid ODS code: 3 to 10 upper-case letters and digits")
		default:
			la.ODS = id.Value
		}
	}
	if la.ODS == "" && !v.has(t+".identifier") {
		v.add(t+".identifier", "The local authority's ODS code is required (system %s)", fhir.ODSSystem)
	}
	if o.Name == "" {
		v.add(t+".name", "The local authority's name is required")
	}
	seen := map[string]bool{}
	for i, c := range o.Contact {
		path := fmt.Sprintf("%s.contact[%d]", t, i)
		purpose := ""
		if c.Purpose != nil {
			for _, cd := range c.Purpose.Coding {
				if cd.System == ContactPurposeSystem {
					purpose = cd.Code
				}
			}
		}
		switch purpose {
		case ContactOfficeHours, ContactEmergencyDuty:
			if seen[purpose] {
				v.add(path+".purpose", "More than one %s contact", purpose)
			}
			seen[purpose] = true
		case "":
			v.add(path+".purpose", "Each contact needs a purpose from %s (%s or %s)", ContactPurposeSystem, ContactOfficeHours, ContactEmergencyDuty)
		default:
			v.add(path+".purpose", "Unknown contact purpose %q: the codes are %s and %s", purpose, ContactOfficeHours, ContactEmergencyDuty)
		}
		phone := false
		for _, tc := range c.Telecom {
			if tc.System == "phone" && tc.Value != "" {
				phone = true
			}
		}
		if !phone {
			v.add(path+".telecom", "Each contact needs a phone number (telecom with system phone)")
		}
	}
	for _, need := range []string{ContactOfficeHours, ContactEmergencyDuty} {
		if !seen[need] {
			v.add(t+".contact", "A %s contact with a phone number is required", need)
		}
	}
	return la, v.list
}

func (v *issues) has(expr string) bool {
	for _, is := range v.list {
		for _, e := range is.Expression {
			if e == expr {
				return true
			}
		}
	}
	return false
}
