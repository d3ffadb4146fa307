package quality

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"cpis/profiles"
)

// Upload warns of a duplicate only for another live plan of the same type
// for the same NHS number; the plan itself among others is not one.
func TestUpload_Duplicate(t *testing.T) {
	th := DefaultThresholds()
	p := plan("c1", profiles.CPP, nhsA, nil)
	cases := []struct {
		name   string
		others []PlanFacts
		want   []Rule
	}{
		{"alone", []PlanFacts{p}, []Rule{}},
		{"another-live-cpp", []PlanFacts{p, plan("c2", profiles.CPP, nhsA, nil)}, []Rule{DuplicatePlan}},
		{"another-type", []PlanFacts{p, plan("l1", profiles.LAC, nhsA, nil)}, []Rule{}},
		{"another-child", []PlanFacts{p, plan("c2", profiles.CPP, nhsB, nil)}, []Rule{}},
		{"ended", []PlanFacts{p, plan("c2", profiles.CPP, nhsA, func(q *PlanFacts) { q.End = now })}, []Rule{}},
		{"entered-in-error", []PlanFacts{p, plan("c2", profiles.CPP, nhsA, func(q *PlanFacts) { q.Status = "entered-in-error" })}, []Rule{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Upload(now, th, p, c.others)
			assert.Equal(t, c.want, rulesOf(got))
			for _, f := range got {
				assert.Equal(t, "c1", f.ResourceID)
				assert.NotContains(t, f.Message, nhsA)
			}
		})
	}
	// A plan that is not live warns of nothing, duplicate or not.
	ended := plan("c1", profiles.CPP, nhsA, func(q *PlanFacts) { q.Status = "finished" })
	assert.Empty(t, Upload(now, th, ended, []PlanFacts{plan("c2", profiles.CPP, nhsA, nil)}))
	// Single's rules come too.
	old := plan("u1", profiles.UCPP, nhsA, func(q *PlanFacts) { q.Start = now.AddDate(-1, 0, 0) })
	assert.Equal(t, []Rule{UCPPOverdue, DuplicatePlan}, rulesOf(Upload(now, th, old, []PlanFacts{plan("u2", profiles.UCPP, nhsA, nil)})))
}
