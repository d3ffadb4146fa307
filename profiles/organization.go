package profiles

import "cpis/fhir"

// LA is what the server keeps of a local authority Organization.
type LA struct {
	ID   string
	ODS  string
	Name string
}

// ParseLA reads the local authority out of an Organization that
// Catalog.Validate found valid: its ODS code and name, from the decoded
// tree the validator checked.
func ParseLA(res *fhir.Resource) *LA {
	la := &LA{ID: res.ID(), Name: str(res.Fields, "name")}
	for _, raw := range list(res.Fields, "identifier") {
		if id := identifier(asObject(raw)); id.System == fhir.ODSSystem {
			la.ODS = id.Value
			break
		}
	}
	return la
}
