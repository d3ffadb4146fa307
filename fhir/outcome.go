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

// ErrorCodeSystem is the code system of the NHS error codes in
// issue.details, as the NHS Spine uses it.
const ErrorCodeSystem = "https://fhir.nhs.uk/R4/CodeSystem/Spine-ErrorOrWarningCode"

// UKCoreOperationOutcome is the profile error bodies claim.
const UKCoreOperationOutcome = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-OperationOutcome"

// Describe gives an error kind's FHIR issue type, NHS error code and
// display; the handlers hold the one table behind it.
type Describe func(Kind) (issueType, code, display string)

// Outcome builds the OperationOutcome for issues, describing their kinds
// with describe. An empty list gives a single informational "all OK" issue,
// as FHIR requires at least one. At most MaxIssues problems are listed,
// then one issue counting the rest.
func Outcome(issues []Issue, describe Describe) *OperationOutcome {
	oo := &OperationOutcome{ResourceType: "OperationOutcome", Meta: &Meta{Profile: []string{UKCoreOperationOutcome}}}
	for _, is := range Capped(issues) {
		sev := is.Severity
		if sev == "" {
			sev = "error"
		}
		typ := is.Type
		oi := OutcomeIssue{Severity: sev, Diagnostics: is.Diagnostics, Expression: is.Expression}
		if is.Kind != KindNone && describe != nil {
			issueType, code, display := describe(is.Kind)
			if typ == "" {
				typ = issueType
			}
			oi.Details = &CodeableConcept{Coding: []Coding{{System: ErrorCodeSystem, Code: code, Display: display}}}
		}
		if typ == "" {
			typ = "exception"
		}
		oi.Code = typ
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
