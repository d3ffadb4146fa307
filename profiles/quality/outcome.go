package quality

import (
	"fmt"
	"strings"

	"cpis/fhir"
)

// Outcome renders every finding as one OperationOutcome: ReportOutcome of
// a report that lists them all.
func Outcome(findings []Finding) *fhir.OperationOutcome {
	return ReportOutcome(Result{Counts: Counts(findings), Listed: findings}, nil)
}

// ReportOutcome renders a report as one OperationOutcome: first one
// information issue per rule that found something, giving its exact count;
// then one information issue per rule with findings not listed, saying how
// many and, from more (when not nil), how to list them; then one issue per
// finding listed, in report order (FindingIssue). No findings give the
// single "All OK" issue.
func ReportOutcome(res Result, more func(Rule) string) *fhir.OperationOutcome {
	oo := &fhir.OperationOutcome{ResourceType: "OperationOutcome", Meta: &fhir.Meta{Profile: []string{fhir.UKCoreOperationOutcome}}}
	for _, r := range Rules {
		if n := res.Counts[r]; n > 0 {
			oo.Issue = append(oo.Issue, fhir.OutcomeIssue{Severity: "information", Code: "informational",
				Details:     ruleConcept(r),
				Diagnostics: fmt.Sprintf("%s: %d %s", r, n, plural(n, "finding", "findings"))})
		}
	}
	for _, r := range Rules {
		u := res.Unlisted[r]
		if u <= 0 {
			continue
		}
		n := res.Counts[r]
		d := fmt.Sprintf("%s: %d of its %d findings %s not listed here (only the first %d by resource id are)", r, u, n,
			plural(u, "is", "are"), n-u)
		if more != nil {
			d += "; " + more(r)
		}
		oo.Issue = append(oo.Issue, fhir.OutcomeIssue{Severity: "information", Code: "informational", Details: ruleConcept(r), Diagnostics: d})
	}
	for _, f := range res.Listed {
		oo.Issue = append(oo.Issue, FindingIssue(f))
	}
	if len(oo.Issue) == 0 {
		oo.Issue = []fhir.OutcomeIssue{{Severity: "information", Code: "informational", Diagnostics: "All OK: no data-quality findings"}}
	}
	return oo
}

// FindingIssue is a finding as an OperationOutcome issue: its rule as
// details.coding (RuleSystem), its resource by reference in diagnostics
// ("EpisodeOfCare/id: …") and the element as a FHIRPath that selects that
// resource (EpisodeOfCare.where(id='id').period.start).
func FindingIssue(f Finding) fhir.OutcomeIssue {
	return fhir.OutcomeIssue{Severity: f.Severity, Code: f.Rule.IssueType(),
		Details: ruleConcept(f.Rule), Diagnostics: diagnostics(f), Expression: []string{selectExpression(f)}}
}

// ParseRule is the rule with code s, if there is one.
func ParseRule(s string) (Rule, bool) {
	for _, r := range Rules {
		if string(r) == s {
			return r, true
		}
	}
	return "", false
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
