package quality

import (
	"fmt"
	"strings"
	"time"

	"cpis/profiles"
)

// RuleSystem is the CodeSystem of the rule codes.
const RuleSystem = profiles.Base + "/CodeSystem/data-quality-rule"

// Rule is the stable code of one data-quality rule.
type Rule string

// The rules, in the order reports list them.
const (
	UCPPOverdue             Rule = "ucpp-overdue"
	CPPReviewOverdue        Rule = "cpp-review-overdue"
	LACReviewOverdue        Rule = "lac-review-overdue"
	DuplicatePlan           Rule = "duplicate-plan"
	EndFarFuture            Rule = "end-far-future"
	StartInFuture           Rule = "start-in-future"
	OrganizationStale       Rule = "organization-stale"
	ContactNumbersIdentical Rule = "contact-numbers-identical"
	NHSNumberCorrected      Rule = "nhs-number-corrected"
)

// Rules lists every rule, in report order.
var Rules = []Rule{UCPPOverdue, CPPReviewOverdue, LACReviewOverdue, DuplicatePlan, EndFarFuture,
	StartInFuture, OrganizationStale, ContactNumbersIdentical, NHSNumberCorrected}

// ruleInfo is the one table from a rule to its display, severity and FHIR
// issue type. The CodeSystem's displays must match (a test checks).
var ruleInfo = map[Rule]struct {
	display, severity, issueType string
}{
	UCPPOverdue:             {"Unborn child protection plan active too long", "warning", "business-rule"},
	CPPReviewOverdue:        {"Child protection plan review overdue", "information", "business-rule"},
	LACReviewOverdue:        {"Looked-after child plan review overdue", "information", "business-rule"},
	DuplicatePlan:           {"Duplicate plan", "warning", "duplicate"},
	EndFarFuture:            {"Plan end date far in the future", "warning", "value"},
	StartInFuture:           {"Plan start date in the future", "warning", "value"},
	OrganizationStale:       {"Local authority details not updated", "information", "business-rule"},
	ContactNumbersIdentical: {"Office-hours and emergency numbers identical", "warning", "value"},
	NHSNumberCorrected:      {"NHS number corrected", "information", "informational"},
}

// Display is the rule's display text, as in the CodeSystem.
func (r Rule) Display() string { return ruleInfo[r].display }

// Severity is the OperationOutcome severity of the rule's findings.
func (r Rule) Severity() string { return ruleInfo[r].severity }

// IssueType is the FHIR issue type of the rule's findings.
func (r Rule) IssueType() string { return ruleInfo[r].issueType }

func (r Rule) rank() int {
	for i, x := range Rules {
		if x == r {
			return i
		}
	}
	return len(Rules)
}

// Thresholds are the limits of the rules. The zero value is not useful:
// start from DefaultThresholds.
type Thresholds struct {
	UCPPMonths         int // ucpp-overdue: a live UCPP started more than this many months ago
	CPPReviewMonths    int // cpp-review-overdue: a live CPP not updated for more than this
	LACReviewMonths    int // lac-review-overdue: a live LAC not updated for more than this
	EndFutureMonths    int // end-far-future: period.end more than this many months ahead
	StartFutureDays    int // start-in-future: period.start more than this many days ahead
	OrganizationMonths int // organization-stale: Organization not updated for more than this
	CorrectionDays     int // nhs-number-corrected: how long a withdrawn plan is listed
}

// DefaultThresholds are the thresholds of issue 18.
func DefaultThresholds() Thresholds {
	return Thresholds{UCPPMonths: 10, CPPReviewMonths: 6, LACReviewMonths: 6, EndFutureMonths: 60,
		StartFutureDays: 0, OrganizationMonths: 12, CorrectionDays: 90}
}

// PlanFacts is what the rules need of one EpisodeOfCare: its current
// version, or for a deleted plan its last live version with Deleted set.
type PlanFacts struct {
	ID          string
	NHSNumber   string // the child's, or for UCPP the mother's
	Type        profiles.PlanType
	Status      string
	Start       time.Time // zero: none
	End         time.Time // zero: open-ended; else the first instant after the plan
	Updated     time.Time // meta.lastUpdated; for a tombstone, when it was deleted
	Deleted     bool
	Identifiers []string // the LA's identifiers, system|value
}

// withdrawn: recorded in error (deleted, or status entered-in-error).
func (p *PlanFacts) withdrawn() bool { return p.Deleted || p.Status == "entered-in-error" }

// live: the plan's Flag is active at now.
func (p *PlanFacts) live(now time.Time) bool {
	switch {
	case p.withdrawn(), p.Status == "finished", p.Status == "cancelled":
		return false
	}
	return p.End.IsZero() || now.Before(p.End)
}

// OrgFacts is what the rules need of the LA's Organization.
type OrgFacts struct {
	ID            string
	Updated       time.Time
	OfficeHours   []string // phone numbers of the office-hours contacts
	EmergencyDuty []string // phone numbers of the emergency-duty-team contacts
}

// Finding is one problem found by one rule.
type Finding struct {
	Rule         Rule
	Severity     string // warning or information
	ResourceType string // EpisodeOfCare or Organization
	ResourceID   string
	Expression   string   // the element, a FHIRPath from the resource type (EpisodeOfCare.period.start)
	Related      []string // other resources the finding names, as references
	Message      string   // names resources by reference, never by NHS number
}

// Reference is the literal reference of the resource the finding is about.
func (f Finding) Reference() string { return f.ResourceType + "/" + f.ResourceID }

func finding(r Rule, typ, id, expr, format string, args ...any) Finding {
	return Finding{Rule: r, Severity: r.Severity(), ResourceType: typ, ResourceID: id, Expression: expr,
		Message: fmt.Sprintf(format, args...)}
}

// Single is the findings about one plan being written that can be judged
// from the plan alone (ucpp-overdue, end-far-future, start-in-future): the
// warnings of an upload. They never refuse the write.
func Single(now time.Time, t Thresholds, p PlanFacts) []Finding {
	c := newCollector(All)
	single(now, t, &p, c)
	return c.result().Listed
}

// single offers c the findings about p alone; a finding's message is
// written only when c lists it.
func single(now time.Time, t Thresholds, p *PlanFacts, c *collector) {
	if p.withdrawn() {
		return
	}
	if p.Type == profiles.UCPP && !p.Start.IsZero() && p.live(now) && now.After(p.Start.AddDate(0, t.UCPPMonths, 0)) &&
		c.want(UCPPOverdue, Key{ID: p.ID}) {
		c.add(finding(UCPPOverdue, "EpisodeOfCare", p.ID, "EpisodeOfCare.period.start",
			"EpisodeOfCare/%s: the unborn child protection plan has been active for more than %d months; the birth has probably happened, so the plan should move to the child's NHS number", p.ID, t.UCPPMonths))
	}
	if !p.End.IsZero() && p.End.After(now.AddDate(0, t.EndFutureMonths, 0)) && c.want(EndFarFuture, Key{ID: p.ID}) {
		c.add(finding(EndFarFuture, "EpisodeOfCare", p.ID, "EpisodeOfCare.period.end",
			"EpisodeOfCare/%s: the plan ends more than %d months from now; check period.end", p.ID, t.EndFutureMonths))
	}
	if !p.Start.IsZero() && p.Start.After(now.AddDate(0, 0, t.StartFutureDays)) && c.want(StartInFuture, Key{ID: p.ID}) {
		c.add(finding(StartInFuture, "EpisodeOfCare", p.ID, "EpisodeOfCare.period.start",
			"EpisodeOfCare/%s: the plan starts in the future; check period.start", p.ID))
	}
}

// correctionWindow is how long before a withdrawal a replacement matched
// by type and start may have been written: a correction is written around
// the time the wrong plan is withdrawn.
const correctionWindow = 24 * time.Hour

// soleReplacement is the live plan among candidates (plans of withdrawn
// plan w's type and start) that replaces w without sharing an identifier:
// of another NHS number, last written no earlier than a day before w was
// withdrawn, and the only such plan. Two or more are ambiguous (in a large
// authority many plans start on one day) and none is chosen: a finding
// names a plan only when the pairing is clear.
func soleReplacement(plans []kept, w int, candidates []int) (int, bool) {
	wp := &plans[w]
	if wp.nhs == "" {
		return 0, false
	}
	found, n := 0, 0
	for _, r := range candidates {
		rp := &plans[r]
		if rp.nhs == wp.nhs || rp.updated < wp.updated-int64(correctionWindow) {
			continue
		}
		found, n = r, n+1
		if n > 1 {
			return 0, false
		}
	}
	return found, n == 1
}

// normalPhone is a phone number's digits, with an international +44 (or
// 0044) read as the national leading 0.
func normalPhone(s string) string {
	var b strings.Builder
	for _, c := range s {
		if c >= '0' && c <= '9' {
			b.WriteRune(c)
		}
	}
	d := b.String()
	switch {
	case strings.HasPrefix(strings.TrimSpace(s), "+44"):
		d = "0" + strings.TrimPrefix(strings.TrimPrefix(d, "44"), "0")
	case strings.HasPrefix(d, "0044"):
		d = "0" + strings.TrimPrefix(strings.TrimPrefix(d, "0044"), "0")
	}
	return d
}

// Counts is the number of findings per rule, every rule present.
func Counts(findings []Finding) map[Rule]int {
	out := make(map[Rule]int, len(Rules))
	for _, r := range Rules {
		out[r] = 0
	}
	for _, f := range findings {
		out[f.Rule]++
	}
	return out
}
