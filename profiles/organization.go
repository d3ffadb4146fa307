package profiles

import "cpis/fhir"

// LA is what the server keeps of a local authority Organization.
type LA struct {
	ID   string
	ODS  string
	Name string
	// The phone numbers a clinician calls: in office hours, and the
	// emergency duty team out of hours ("" if the Organization has none).
	OfficeHours   string
	EmergencyDuty string
}

// ParseLA reads the local authority out of an Organization that
// Catalog.Validate found valid: its ODS code, name and contact numbers,
// from the decoded tree the validator checked.
func ParseLA(res *fhir.Resource) *LA {
	la := &LA{ID: res.ID(), Name: str(res.Fields, "name")}
	for _, raw := range list(res.Fields, "identifier") {
		if id := identifier(asObject(raw)); id.System == fhir.ODSSystem {
			la.ODS = id.Value
			break
		}
	}
	for _, raw := range list(res.Fields, "contact") {
		c := asObject(raw)
		var dst *string
		for _, cd := range list(obj(c, "purpose"), "coding") {
			switch code := coding(asObject(cd)); {
			case code.System != ContactPurposeSystem:
			case code.Code == ContactOfficeHours:
				dst = &la.OfficeHours
			case code.Code == ContactEmergencyDuty:
				dst = &la.EmergencyDuty
			}
		}
		if dst == nil || *dst != "" {
			continue
		}
		for _, t := range list(c, "telecom") {
			if tm := asObject(t); str(tm, "system") == "phone" && str(tm, "value") != "" {
				*dst = str(tm, "value")
				break
			}
		}
	}
	return la
}
