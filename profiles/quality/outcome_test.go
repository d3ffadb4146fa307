package quality

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/fhir"
	"cpis/profiles"
)

// A report renders as an OperationOutcome that google/fhir accepts as R4
// with no issue: counts first, then one issue per finding carrying its rule
// code, its resource and its element.
func TestOutcome_ValidR4WithCountsAndFindings(t *testing.T) {
	codec, err := fhir.NewCodec()
	require.NoError(t, err)
	plans := []PlanFacts{
		plan("c1", profiles.CPP, nhsA, nil),
		plan("c2", profiles.CPP, nhsA, nil),
		plan("u1", profiles.UCPP, nhsB, func(p *PlanFacts) { p.Start = now.AddDate(-1, 0, 0) }),
		plan("u2", profiles.UCPP, "9434765919", func(p *PlanFacts) { p.Start = now.AddDate(-1, 0, 0) }),
	}
	org := &OrgFacts{ID: "la001", Updated: now.AddDate(-2, 0, 0), OfficeHours: []string{"0300 123 1000"}, EmergencyDuty: []string{"0300 123 1000"}}
	oo := Outcome(Report(now, DefaultThresholds(), plans, org))
	body := oo.JSON()

	res, issues := codec.Decode(body)
	require.NotNil(t, res, "%v", issues)
	assert.Empty(t, issues, "valid R4")
	assert.Equal(t, "OperationOutcome", res.Type)

	var got struct {
		Issue []struct {
			Severity, Code, Diagnostics string
			Details                     struct{ Coding []fhir.Coding }
			Expression                  []string
		}
	}
	require.NoError(t, json.Unmarshal(body, &got))
	type row struct{ sev, code, rule, diag, expr string }
	var rows []row
	for _, is := range got.Issue {
		require.Len(t, is.Details.Coding, 1)
		assert.Equal(t, RuleSystem, is.Details.Coding[0].System)
		r := row{is.Severity, is.Code, is.Details.Coding[0].Code, is.Diagnostics, ""}
		if len(is.Expression) == 1 {
			r.expr = is.Expression[0]
		}
		rows = append(rows, row{r.sev, r.code, r.rule, r.diag[:strings.IndexAny(r.diag+" ", " ")], r.expr})
	}
	assert.Equal(t, []row{
		{"information", "informational", "ucpp-overdue", "ucpp-overdue:", ""},
		{"information", "informational", "duplicate-plan", "duplicate-plan:", ""},
		{"information", "informational", "organization-stale", "organization-stale:", ""},
		{"information", "informational", "contact-numbers-identical", "contact-numbers-identical:", ""},
		{"warning", "business-rule", "ucpp-overdue", "EpisodeOfCare/u1:", "EpisodeOfCare.where(id='u1').period.start"},
		{"warning", "business-rule", "ucpp-overdue", "EpisodeOfCare/u2:", "EpisodeOfCare.where(id='u2').period.start"},
		{"warning", "duplicate", "duplicate-plan", "EpisodeOfCare/c1:", "EpisodeOfCare.where(id='c1').patient.identifier"},
		{"information", "business-rule", "organization-stale", "Organization/la001:", "Organization.where(id='la001').meta.lastUpdated"},
		{"warning", "value", "contact-numbers-identical", "Organization/la001:", "Organization.where(id='la001').contact.telecom"},
	}, rows)
	assert.Equal(t, "ucpp-overdue: 2 findings", got.Issue[0].Diagnostics)
	assert.Equal(t, "duplicate-plan: 1 finding", got.Issue[1].Diagnostics)
	for _, nhs := range []string{nhsA, nhsB, "9434765919"} {
		assert.NotContains(t, string(body), nhs, "the outcome names plans, not children")
	}
}

// No findings is the one "All OK" issue, still valid R4.
func TestOutcome_AllOK(t *testing.T) {
	codec, err := fhir.NewCodec()
	require.NoError(t, err)
	body := Outcome(nil).JSON()
	res, issues := codec.Decode(body)
	require.NotNil(t, res)
	assert.Empty(t, issues)
	assert.JSONEq(t, `{"resourceType":"OperationOutcome","meta":{"profile":["`+fhir.UKCoreOperationOutcome+`"]},
	 "issue":[{"severity":"information","code":"informational","diagnostics":"All OK: no data-quality findings"}]}`, string(body))
}

// Upload warnings join a write's outcome without turning it into an
// error: fhir.Invalid sees nothing to refuse, and the rendered outcome is
// valid R4 with the warnings in it.
func TestWarnings_NeverRefuseTheWrite(t *testing.T) {
	codec, err := fhir.NewCodec()
	require.NoError(t, err)
	p := plan("u1", profiles.UCPP, nhsA, func(p *PlanFacts) { p.Start, p.End = now.AddDate(-1, 0, 0), now.AddDate(6, 0, 0) })
	issues := Warnings(Single(now, DefaultThresholds(), p))
	require.Len(t, issues, 2)
	assert.Nil(t, fhir.Invalid(issues), "warnings are not a refusal")
	assert.Equal(t, fhir.Issue{Severity: "warning", Type: "business-rule", Expression: []string{"EpisodeOfCare.period.start"},
		Diagnostics: "ucpp-overdue: EpisodeOfCare/u1: the unborn child protection plan has been active for more than 10 months; the birth has probably happened, so the plan should move to the child's NHS number"}, issues[0])
	assert.Equal(t, []string{"EpisodeOfCare.period.end"}, issues[1].Expression)
	all := append([]fhir.Issue{{Severity: "information", Type: "informational", Diagnostics: "Created EpisodeOfCare/u1"}}, issues...)
	res, problems := codec.Decode(fhir.Outcome(all, nil).JSON())
	require.NotNil(t, res)
	assert.Empty(t, problems)
}

// The CodeSystem served with the other definitions holds exactly the
// rules, with the displays the outcomes use.
func TestCodeSystemMatchesTheRules(t *testing.T) {
	cat, err := profiles.Load(time.UTC)
	require.NoError(t, err)
	found := cat.Search("CodeSystem", RuleSystem)
	require.Len(t, found, 1)
	assert.Equal(t, "data-quality-rule", found[0].ID)
	var cs struct {
		Count   int
		Concept []struct{ Code, Display string }
	}
	require.NoError(t, json.Unmarshal(found[0].Body, &cs))
	require.Len(t, cs.Concept, len(Rules))
	assert.Equal(t, len(Rules), cs.Count)
	for i, r := range Rules {
		assert.Equal(t, string(r), cs.Concept[i].Code)
		assert.Equal(t, r.Display(), cs.Concept[i].Display)
		assert.Contains(t, []string{"warning", "information"}, r.Severity())
	}
}
