package quality

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/profiles"
)

// now is the tests' clock: every rule is judged against it, so each case
// can sit exactly on a threshold or one second past it.
var now = time.Date(2026, 12, 2, 5, 30, 0, 0, time.UTC)

const (
	nhsA = "9449306753"
	nhsB = "9449306761"
)

func plan(id string, typ profiles.PlanType, nhs string, mod func(*PlanFacts)) PlanFacts {
	p := PlanFacts{ID: id, NHSNumber: nhs, Type: typ, Status: "active", Start: now.AddDate(0, -1, 0), Updated: now.AddDate(0, 0, -1),
		Identifiers: []string{"https://la001.example/plan-id|" + id}}
	if mod != nil {
		mod(&p)
	}
	return p
}

func rulesOf(fs []Finding) []Rule {
	out := []Rule{}
	for _, f := range fs {
		out = append(out, f.Rule)
	}
	return out
}

var second = time.Second

// Each rule fires one second past its threshold and not on it, with the
// default thresholds; plans that are not live are not judged.
func TestReport_EachRuleAtItsThreshold(t *testing.T) {
	th := DefaultThresholds()
	cases := []struct {
		name  string
		plans []PlanFacts
		org   *OrgFacts
		want  []Rule
	}{
		{"ucpp-10-months-not", []PlanFacts{plan("u1", profiles.UCPP, nhsA, func(p *PlanFacts) { p.Start = now.AddDate(0, -10, 0) })}, nil, []Rule{}},
		{"ucpp-10-months-and-a-second", []PlanFacts{plan("u1", profiles.UCPP, nhsA, func(p *PlanFacts) { p.Start = now.AddDate(0, -10, 0).Add(-second) })}, nil, []Rule{UCPPOverdue}},
		{"ucpp-ended-not", []PlanFacts{plan("u1", profiles.UCPP, nhsA, func(p *PlanFacts) { p.Start, p.End = now.AddDate(-1, 0, 0), now })}, nil, []Rule{}},
		{"ucpp-finished-not", []PlanFacts{plan("u1", profiles.UCPP, nhsA, func(p *PlanFacts) { p.Start, p.Status = now.AddDate(-1, 0, 0), "finished" })}, nil, []Rule{}},
		{"cpp-too-long-is-not-ucpp", []PlanFacts{plan("c1", profiles.CPP, nhsA, func(p *PlanFacts) { p.Start = now.AddDate(-2, 0, 0) })}, nil, []Rule{}},
		{"cpp-6-months-not", []PlanFacts{plan("c1", profiles.CPP, nhsA, func(p *PlanFacts) { p.Updated = now.AddDate(0, -6, 0) })}, nil, []Rule{}},
		{"cpp-6-months-and-a-second", []PlanFacts{plan("c1", profiles.CPP, nhsA, func(p *PlanFacts) { p.Updated = now.AddDate(0, -6, 0).Add(-second) })}, nil, []Rule{CPPReviewOverdue}},
		{"cpp-stale-but-ended-not", []PlanFacts{plan("c1", profiles.CPP, nhsA, func(p *PlanFacts) { p.Updated, p.End = now.AddDate(-1, 0, 0), now.Add(-second) })}, nil, []Rule{}},
		{"lac-6-months-not", []PlanFacts{plan("l1", profiles.LAC, nhsA, func(p *PlanFacts) { p.Updated = now.AddDate(0, -6, 0) })}, nil, []Rule{}},
		{"lac-6-months-and-a-second", []PlanFacts{plan("l1", profiles.LAC, nhsA, func(p *PlanFacts) { p.Updated = now.AddDate(0, -6, 0).Add(-second) })}, nil, []Rule{LACReviewOverdue}},
		{"ucpp-stale-is-no-review", []PlanFacts{plan("u1", profiles.UCPP, nhsA, func(p *PlanFacts) { p.Updated = now.AddDate(-1, 0, 0) })}, nil, []Rule{}},
		{"duplicate", []PlanFacts{plan("c1", profiles.CPP, nhsA, nil), plan("c2", profiles.CPP, nhsA, nil)}, nil, []Rule{DuplicatePlan}},
		{"same-child-other-type-not", []PlanFacts{plan("c1", profiles.CPP, nhsA, nil), plan("l1", profiles.LAC, nhsA, nil)}, nil, []Rule{}},
		{"same-type-other-child-not", []PlanFacts{plan("c1", profiles.CPP, nhsA, nil), plan("c2", profiles.CPP, nhsB, nil)}, nil, []Rule{}},
		{"duplicate-of-an-ended-plan-not", []PlanFacts{plan("c1", profiles.CPP, nhsA, nil), plan("c2", profiles.CPP, nhsA, func(p *PlanFacts) { p.End = now })}, nil, []Rule{}},
		{"duplicate-of-a-deleted-plan-not", []PlanFacts{plan("c1", profiles.CPP, nhsA, nil), plan("c2", profiles.CPP, nhsA, func(p *PlanFacts) { p.Deleted = true; p.Identifiers = nil })}, nil, []Rule{}},
		{"end-5-years-not", []PlanFacts{plan("c1", profiles.CPP, nhsA, func(p *PlanFacts) { p.End = now.AddDate(5, 0, 0) })}, nil, []Rule{}},
		{"end-5-years-and-a-second", []PlanFacts{plan("c1", profiles.CPP, nhsA, func(p *PlanFacts) { p.End = now.AddDate(5, 0, 0).Add(second) })}, nil, []Rule{EndFarFuture}},
		{"start-now-not", []PlanFacts{plan("c1", profiles.CPP, nhsA, func(p *PlanFacts) { p.Start = now })}, nil, []Rule{}},
		{"start-a-second-ahead", []PlanFacts{plan("c1", profiles.CPP, nhsA, func(p *PlanFacts) { p.Start = now.Add(second) })}, nil, []Rule{StartInFuture}},
		{"start-ahead-but-entered-in-error-not", []PlanFacts{plan("c1", profiles.CPP, nhsA, func(p *PlanFacts) { p.Start, p.Status = now.AddDate(0, 1, 0), "entered-in-error" })}, nil, []Rule{}},
		{"organization-12-months-not", nil, &OrgFacts{ID: "la001", Updated: now.AddDate(-1, 0, 0)}, []Rule{}},
		{"organization-12-months-and-a-second", nil, &OrgFacts{ID: "la001", Updated: now.AddDate(-1, 0, 0).Add(-second)}, []Rule{OrganizationStale}},
		{"numbers-differ-not", nil, &OrgFacts{ID: "la001", Updated: now, OfficeHours: []string{"0300 123 1000"}, EmergencyDuty: []string{"0300 123 9999"}}, []Rule{}},
		{"numbers-identical", nil, &OrgFacts{ID: "la001", Updated: now, OfficeHours: []string{"0300 123 1000"}, EmergencyDuty: []string{"0300 123 1000"}}, []Rule{ContactNumbersIdentical}},
		{"numbers-identical-written-differently", nil, &OrgFacts{ID: "la001", Updated: now, OfficeHours: []string{"+44 (0)300 123-1000"}, EmergencyDuty: []string{"03001231000"}}, []Rule{ContactNumbersIdentical}},
		{"corrected-by-identifier", []PlanFacts{
			plan("w1", profiles.CPP, nhsA, func(p *PlanFacts) {
				p.Deleted, p.Updated = true, now.AddDate(0, 0, -90)
				p.Identifiers = []string{"s|1"}
			}),
			plan("r1", profiles.CPP, nhsB, func(p *PlanFacts) { p.Identifiers, p.Start = []string{"s|1"}, now.AddDate(0, -2, 0) }),
		}, nil, []Rule{NHSNumberCorrected}},
		{"corrected-91-days-ago-not", []PlanFacts{
			plan("w1", profiles.CPP, nhsA, func(p *PlanFacts) {
				p.Deleted, p.Updated = true, now.AddDate(0, 0, -90).Add(-second)
				p.Identifiers = []string{"s|1"}
			}),
			plan("r1", profiles.CPP, nhsB, func(p *PlanFacts) { p.Identifiers = []string{"s|1"} }),
		}, nil, []Rule{}},
		{"corrected-by-type-and-start", []PlanFacts{
			plan("w1", profiles.LAC, nhsA, func(p *PlanFacts) { p.Status = "entered-in-error" }),
			plan("r1", profiles.LAC, nhsB, nil),
		}, nil, []Rule{NHSNumberCorrected}},
		{"type-and-start-ambiguous-not", []PlanFacts{
			plan("w1", profiles.LAC, nhsA, func(p *PlanFacts) { p.Status = "entered-in-error" }),
			plan("r1", profiles.LAC, nhsB, nil),
			plan("r2", profiles.LAC, "9434765919", nil),
		}, nil, []Rule{}},
		{"type-and-start-written-a-day-before-the-withdrawal", []PlanFacts{
			plan("w1", profiles.LAC, nhsA, func(p *PlanFacts) { p.Deleted, p.Updated = true, now }),
			plan("r1", profiles.LAC, nhsB, func(p *PlanFacts) { p.Updated = now.Add(-24 * time.Hour) }),
		}, nil, []Rule{NHSNumberCorrected}},
		{"type-and-start-written-long-before-the-withdrawal-not", []PlanFacts{
			plan("w1", profiles.LAC, nhsA, func(p *PlanFacts) { p.Deleted, p.Updated = true, now }),
			plan("r1", profiles.LAC, nhsB, func(p *PlanFacts) { p.Updated = now.Add(-24 * time.Hour).Add(-second) }),
		}, nil, []Rule{}},
		{"other-start-other-identifier-not", []PlanFacts{
			plan("w1", profiles.LAC, nhsA, func(p *PlanFacts) { p.Status = "entered-in-error" }),
			plan("r1", profiles.LAC, nhsB, func(p *PlanFacts) { p.Start = p.Start.Add(-24 * time.Hour) }),
		}, nil, []Rule{}},
		{"withdrawn-and-rewritten-for-the-same-child-not", []PlanFacts{
			plan("w1", profiles.CPP, nhsA, func(p *PlanFacts) { p.Deleted = true }),
			plan("r1", profiles.CPP, nhsA, func(p *PlanFacts) { p.Identifiers = []string{"https://la001.example/plan-id|w1"} }),
		}, nil, []Rule{}},
		{"replacement-not-live-not", []PlanFacts{
			plan("w1", profiles.CPP, nhsA, func(p *PlanFacts) { p.Deleted = true }),
			plan("r1", profiles.CPP, nhsB, func(p *PlanFacts) { p.Status = "cancelled" }),
		}, nil, []Rule{}},
		{"clean", []PlanFacts{plan("c1", profiles.CPP, nhsA, nil), plan("l1", profiles.LAC, nhsB, nil), plan("u1", profiles.UCPP, nhsB, nil)},
			&OrgFacts{ID: "la001", Updated: now, OfficeHours: []string{"0300 123 1000"}, EmergencyDuty: []string{"0300 123 9999"}}, []Rule{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Report(now, th, tc.plans, tc.org)
			assert.Equal(t, tc.want, rulesOf(got))
			for _, f := range got {
				assert.Equal(t, f.Rule.Severity(), f.Severity)
				assert.NotContains(t, f.Message, nhsA, "a message names resources, never NHS numbers")
				assert.NotContains(t, f.Message, nhsB)
			}
		})
	}
}

// Thresholds move the rules: the same plan triggers under a tighter
// threshold and not under a looser one.
func TestReport_ThresholdsAreHonoured(t *testing.T) {
	p := []PlanFacts{plan("u1", profiles.UCPP, nhsA, func(p *PlanFacts) {
		p.Start, p.Updated, p.End = now.AddDate(0, -4, 0), now.AddDate(0, -4, 0), now.AddDate(2, 0, 0)
	})}
	tight := Thresholds{UCPPMonths: 3, CPPReviewMonths: 1, LACReviewMonths: 1, EndFutureMonths: 12, OrganizationMonths: 1, CorrectionDays: 1}
	assert.Equal(t, []Rule{UCPPOverdue, EndFarFuture}, rulesOf(Report(now, tight, p, nil)))
	assert.Empty(t, Report(now, DefaultThresholds(), p, nil))

	ahead := []PlanFacts{plan("c1", profiles.CPP, nhsA, func(p *PlanFacts) { p.Start = now.AddDate(0, 0, 7) })}
	lenient := DefaultThresholds()
	lenient.StartFutureDays = 7
	assert.Empty(t, Report(now, lenient, ahead, nil), "7 days ahead is within a 7-day grace")
	lenient.StartFutureDays = 6
	assert.Equal(t, []Rule{StartInFuture}, rulesOf(Report(now, lenient, ahead, nil)))
}

// The report is one LA's: the registry passes one LA's facts, so a child
// with a plan in each of two LAs is not a duplicate, and a plan withdrawn in
// one LA is not "corrected" by another LA's plan.
func TestHazard_ReportMixesTwoLAs(t *testing.T) {
	la1 := []PlanFacts{
		plan("a1", profiles.CPP, nhsA, nil),
		plan("aw", profiles.CPP, nhsB, func(p *PlanFacts) { p.Deleted, p.Start = true, now.AddDate(0, -3, 0); p.Identifiers = []string{"s|x"} }),
	}
	la2 := []PlanFacts{
		plan("b1", profiles.CPP, nhsA, func(p *PlanFacts) { p.Identifiers = []string{"s|x"} }),
	}
	assert.Empty(t, Report(now, DefaultThresholds(), la1, nil))
	assert.Empty(t, Report(now, DefaultThresholds(), la2, nil))
	// The same plans in one LA's report would be two findings: the test
	// above is not empty by accident.
	both := append(append([]PlanFacts{}, la1...), la2...)
	assert.Equal(t, []Rule{DuplicatePlan, NHSNumberCorrected}, rulesOf(Report(now, DefaultThresholds(), both, nil)))
}

// A duplicate group is one finding, on the lowest id, naming the others;
// findings come in rule order then id order, whatever the input order.
func TestReport_DuplicateGroupAndOrder(t *testing.T) {
	plans := []PlanFacts{
		plan("c3", profiles.CPP, nhsA, nil),
		plan("z9", profiles.UCPP, nhsB, func(p *PlanFacts) { p.Start = now.AddDate(-1, 0, 0) }),
		plan("c1", profiles.CPP, nhsA, nil),
		plan("c2", profiles.CPP, nhsA, nil),
		plan("a0", profiles.UCPP, nhsA, func(p *PlanFacts) { p.Start = now.AddDate(-1, 0, 0) }),
	}
	got := Report(now, DefaultThresholds(), plans, nil)
	require.Equal(t, []Rule{UCPPOverdue, UCPPOverdue, DuplicatePlan}, rulesOf(got))
	assert.Equal(t, "a0", got[0].ResourceID)
	assert.Equal(t, "z9", got[1].ResourceID)
	assert.Equal(t, "c1", got[2].ResourceID)
	assert.Equal(t, []string{"EpisodeOfCare/c2", "EpisodeOfCare/c3"}, got[2].Related)
	assert.Equal(t, "EpisodeOfCare.patient.identifier", got[2].Expression)
	assert.Equal(t, 2, Counts(got)[UCPPOverdue])
	assert.Equal(t, 0, Counts(got)[NHSNumberCorrected])
}

// A correction pair matched by both identifier and type+start is listed
// once; two withdrawn plans replaced by one plan are two findings.
func TestReport_CorrectionPairsOnce(t *testing.T) {
	plans := []PlanFacts{
		plan("w1", profiles.CPP, nhsA, func(p *PlanFacts) { p.Deleted = true; p.Identifiers = []string{"s|1"} }),
		plan("w2", profiles.CPP, "9434765919", func(p *PlanFacts) { p.Status = "entered-in-error"; p.Identifiers = []string{"s|2"} }),
		plan("r1", profiles.CPP, nhsB, func(p *PlanFacts) { p.Identifiers = []string{"s|1"} }),
	}
	got := Report(now, DefaultThresholds(), plans, nil)
	require.Equal(t, []Rule{NHSNumberCorrected, NHSNumberCorrected}, rulesOf(got))
	assert.Equal(t, []string{"EpisodeOfCare/w1"}, got[0].Related)
	assert.Equal(t, []string{"EpisodeOfCare/w2"}, got[1].Related)
	assert.Equal(t, "r1", got[0].ResourceID)
}

// Single gives an upload the rules one plan can break, at their
// thresholds, and never the rules that need the LA's other data.
func TestSingle_UploadWarnings(t *testing.T) {
	th := DefaultThresholds()
	cases := []struct {
		name string
		p    PlanFacts
		want []Rule
	}{
		{"clean", plan("c1", profiles.CPP, nhsA, nil), nil},
		{"ucpp-at-10-months", plan("u1", profiles.UCPP, nhsA, func(p *PlanFacts) { p.Start = now.AddDate(0, -10, 0) }), nil},
		{"ucpp-past-10-months", plan("u1", profiles.UCPP, nhsA, func(p *PlanFacts) { p.Start = now.AddDate(0, -10, 0).Add(-second) }), []Rule{UCPPOverdue}},
		{"start-ahead-and-end-far", plan("c1", profiles.CPP, nhsA, func(p *PlanFacts) { p.Start, p.End = now.AddDate(0, 0, 1), now.AddDate(6, 0, 0) }), []Rule{EndFarFuture, StartInFuture}},
		{"end-at-5-years", plan("c1", profiles.CPP, nhsA, func(p *PlanFacts) { p.End = now.AddDate(5, 0, 0) }), nil},
		{"stale-cpp-is-no-upload-warning", plan("c1", profiles.CPP, nhsA, func(p *PlanFacts) { p.Updated = now.AddDate(-1, 0, 0) }), nil},
		{"entered-in-error-is-not-judged", plan("c1", profiles.CPP, nhsA, func(p *PlanFacts) { p.Status, p.Start = "entered-in-error", now.AddDate(1, 0, 0) }), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Single(now, th, tc.p)
			var rules []Rule
			for _, f := range got {
				rules = append(rules, f.Rule)
				assert.Equal(t, "warning", f.Severity)
			}
			assert.Equal(t, tc.want, rules)
		})
	}
}

func TestThresholdsFromEnv(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	got, err := ThresholdsFromEnv(env(nil))
	require.NoError(t, err)
	assert.Equal(t, DefaultThresholds(), got)

	got, err = ThresholdsFromEnv(env(map[string]string{"CPIS_DQ_UCPP_MONTHS": "9", "CPIS_DQ_START_FUTURE_DAYS": "0", "CPIS_DQ_CORRECTION_DAYS": "30"}))
	require.NoError(t, err)
	want := DefaultThresholds()
	want.UCPPMonths, want.CorrectionDays = 9, 30
	assert.Equal(t, want, got)

	for _, bad := range []map[string]string{{"CPIS_DQ_UCPP_MONTHS": "0"}, {"CPIS_DQ_CPP_REVIEW_MONTHS": "six"}, {"CPIS_DQ_START_FUTURE_DAYS": "-1"}, {"CPIS_DQ_END_FUTURE_MONTHS": "99999"}} {
		_, err := ThresholdsFromEnv(env(bad))
		for k := range bad {
			assert.ErrorContains(t, err, k)
		}
	}
}
