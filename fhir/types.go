package fhir

import "encoding/json"

// Identifier systems and canonical bases the server speaks.
const (
	NHSNumberSystem = "https://fhir.nhs.uk/Id/nhs-number"
	ODSSystem       = "https://fhir.nhs.uk/Id/ods-organization-code"
	SDSUserSystem   = "https://fhir.nhs.uk/Id/sds-user-id"
	SDSRoleSystem   = "https://fhir.nhs.uk/Id/sds-role-profile-id"
	// Version is the FHIR version the server implements.
	Version = "4.0.1"
	// MIME is the FHIR JSON media type.
	MIME = "application/fhir+json"
)

// These are the small FHIR datatypes the server reads and writes with
// encoding/json. Field order follows the FHIR specification so that
// generated resources read naturally.

// Meta is Resource.meta.
type Meta struct {
	VersionID   string   `json:"versionId,omitempty"`
	LastUpdated string   `json:"lastUpdated,omitempty"`
	Profile     []string `json:"profile,omitempty"`
	Security    []Coding `json:"security,omitempty"`
	Tag         []Coding `json:"tag,omitempty"`
}

// Coding is a FHIR Coding.
type Coding struct {
	System  string `json:"system,omitempty"`
	Version string `json:"version,omitempty"`
	Code    string `json:"code,omitempty"`
	Display string `json:"display,omitempty"`
}

// CodeableConcept is a FHIR CodeableConcept.
type CodeableConcept struct {
	Coding []Coding `json:"coding,omitempty"`
	Text   string   `json:"text,omitempty"`
}

// Has reports whether the concept carries the code in the system.
func (c *CodeableConcept) Has(system, code string) bool {
	if c == nil {
		return false
	}
	for _, cd := range c.Coding {
		if cd.System == system && cd.Code == code {
			return true
		}
	}
	return false
}

// Identifier is a FHIR Identifier.
type Identifier struct {
	Use    string `json:"use,omitempty"`
	System string `json:"system,omitempty"`
	Value  string `json:"value,omitempty"`
}

// Token renders the identifier as a search token, system|value.
func (i Identifier) Token() string { return i.System + "|" + i.Value }

// Reference is a FHIR Reference.
type Reference struct {
	Reference  string      `json:"reference,omitempty"`
	Type       string      `json:"type,omitempty"`
	Identifier *Identifier `json:"identifier,omitempty"`
	Display    string      `json:"display,omitempty"`
}

// Period is a FHIR Period.
type Period struct {
	Start string `json:"start,omitempty"`
	End   string `json:"end,omitempty"`
}

// ContactPoint is a FHIR ContactPoint.
type ContactPoint struct {
	System string `json:"system,omitempty"`
	Value  string `json:"value,omitempty"`
	Use    string `json:"use,omitempty"`
	Rank   int    `json:"rank,omitempty"`
}

// Extension is a FHIR Extension with the value types the server uses.
type Extension struct {
	URL            string     `json:"url"`
	ValueReference *Reference `json:"valueReference,omitempty"`
	ValueString    string     `json:"valueString,omitempty"`
	ValueCode      string     `json:"valueCode,omitempty"`
	ValueBoolean   *bool      `json:"valueBoolean,omitempty"`
}

// Raw is an encoded resource kept as bytes so it is served without being
// decoded again.
type Raw = json.RawMessage
