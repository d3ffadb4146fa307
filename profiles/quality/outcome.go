package quality

import (
	"fmt"
	"strings"

	"cpis/fhir"
)

// Outcome renders a report as one OperationOutcome: first one information
// issue per rule that found something, giving its count, then one issue
// per finding in report order. Every issue carries the rule as
// details.coding (RuleSystem); a finding's issue names its resource in
// diagnostics ("EpisodeOfCare/id: …") and the element as a FHIRPath that
// selects that resource (EpisodeOfCare.where(id='id').period.start). The
// list is not capped: the LA asked for its whole report. No findings give
// the single "All OK" issue.
func Outcome(findings []Finding) *fhir.OperationOutcome {
	oo := &fhir.OperationOutcome{ResourceType: "OperationOutcome", Meta: &fhir.Meta{Profile: []string{fhir.UKCoreOperationOutcome}}}
	counts := Counts(findings)
	for _, r := range Rules {
		if n := counts[r]; n > 0 {
			oo.Issue = append(oo.Issue, fhir.OutcomeIssue{Severity: "information", Code: "informational",
				Details:     ruleConcept(r),
				Diagnostics: fmt.Sprintf("%s: %d %s", r, n, plural(n, "finding", "findings"))})
		}
	}
	for _, f := range findings {
		oo.Issue = append(oo.Issue, fhir.OutcomeIssue{Severity: f.Severity, Code: f.Rule.IssueType(),
			Details: ruleConcept(f.Rule), Diagnostics: diagnostics(f), Expression: []string{selectExpression(f)}})
	}
	if len(oo.Issue) == 0 {
		oo.Issue = []fhir.OutcomeIssue{{Severity: "information", Code: "informational", Diagnostics: "All OK: no data-quality findings"}}
	}
	return oo
}

// Warnings are a written plan's findings (from Single) as issues for the
// write's OperationOutcome, or a Bundle entry's response.outcome: severity
// warning or information, so fhir.Invalid never turns them into a refusal.
// The rule code leads the diagnostics ("ucpp-overdue: …"); the expression
// is the element in the written resource.
func Warnings(findings []Finding) []fhir.Issue {
	out := make([]fhir.Issue, 0, len(findings))
	for _, f := range findings {
		out = append(out, fhir.Issue{Severity: f.Severity, Type: f.Rule.IssueType(),
			Diagnostics: string(f.Rule) + ": " + f.Message, Expression: []string{f.Expression}})
	}
	return out
}

func ruleConcept(r Rule) *fhir.CodeableConcept {
	return &fhir.CodeableConcept{Coding: []fhir.Coding{{System: RuleSystem, Code: string(r), Display: r.Display()}}}
}

func diagnostics(f Finding) string {
	ref := f.Reference()
	if strings.HasPrefix(f.Message, ref) {
		return f.Message
	}
	return ref + ": " + f.Message
}

// selectExpression is the finding's element within its resource, selected
// by id: EpisodeOfCare.period.start → EpisodeOfCare.where(id='x').period.start.
func selectExpression(f Finding) string {
	rest := strings.TrimPrefix(f.Expression, f.ResourceType)
	return f.ResourceType + ".where(id='" + f.ResourceID + "')" + rest
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
