package fhir

// OperationOutcome is the FHIR OperationOutcome resource.
type OperationOutcome struct {
	ResourceType string         `json:"resourceType"`
	ID           string         `json:"id,omitempty"`
	Meta         *Meta          `json:"meta,omitempty"`
	Issue        []OutcomeIssue `json:"issue"`
}

// OutcomeIssue is OperationOutcome.issue.
type OutcomeIssue struct {
	Severity    string           `json:"severity"`
	Code        string           `json:"code"`
	Details     *CodeableConcept `json:"details,omitempty"`
	Diagnostics string           `json:"diagnostics,omitempty"`
	Expression  []string         `json:"expression,omitempty"`
}

// UKCoreOperationOutcome is the profile error bodies claim.
const UKCoreOperationOutcome = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-OperationOutcome"

// Outcome builds the OperationOutcome for issues. An empty list gives a
// single informational "all OK" issue, as FHIR requires at least one.
// At most MaxIssues problems are listed, then one issue counting the rest.
func Outcome(issues []Issue) *OperationOutcome {
	oo := &OperationOutcome{ResourceType: "OperationOutcome", Meta: &Meta{Profile: []string{UKCoreOperationOutcome}}}
	for _, is := range Capped(issues) {
		sev := is.Severity
		if sev == "" {
			sev = "error"
		}
		typ := is.Type
		if typ == "" {
			typ = is.Code.IssueType()
		}
		oi := OutcomeIssue{Severity: sev, Code: typ, Diagnostics: is.Diagnostics, Expression: is.Expression}
		if is.Code != "" {
			oi.Details = &CodeableConcept{Coding: []Coding{{System: ErrorCodeSystem, Code: string(is.Code), Display: is.Code.Display()}}}
		}
		oo.Issue = append(oo.Issue, oi)
	}
	if len(oo.Issue) == 0 {
		oo.Issue = []OutcomeIssue{{Severity: "information", Code: "informational", Diagnostics: "All OK"}}
	}
	return oo
}

// JSON encodes the outcome. It cannot fail for the types it holds.
func (o *OperationOutcome) JSON() []byte {
	b, err := Marshal(o)
	if err != nil {
		panic("fhir: encoding OperationOutcome: " + err.Error())
	}
	return b
}
