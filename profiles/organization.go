package profiles

import (
	"encoding/json"

	"cpis/fhir"
)

// LA is what the server keeps of a local authority Organization.
type LA struct {
	ID   string
	ODS  string
	Name string
}

type organization struct {
	Identifier []fhir.Identifier `json:"identifier"`
	Name       string            `json:"name"`
}

// ParseLA reads the local authority out of an Organization that
// Catalog.Validate found valid: its ODS code and name.
func ParseLA(res *fhir.Resource) *LA {
	var o organization
	_ = json.Unmarshal(res.Body, &o) // validated: the shape is right
	la := &LA{ID: res.ID(), Name: o.Name}
	for _, id := range o.Identifier {
		if id.System == fhir.ODSSystem {
			la.ODS = id.Value
			break
		}
	}
	return la
}
