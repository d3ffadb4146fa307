package quality

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/profiles"
)

// dirtyPlans are plans that trip every plan rule many times, given in a
// shuffled order: overdue UCPPs, stale CPPs and LACs, duplicate groups,
// far ends, future starts, and withdrawn plans each replaced by two plans
// of other children (two corrections on one replacement too).
func dirtyPlans() []PlanFacts {
	var out []PlanFacts
	nhs := func(i int) string { return fmt.Sprintf("9%09d", i) }
	for i := 0; i < 40; i++ {
		id := fmt.Sprintf("p%03d", i)
		typ := []profiles.PlanType{profiles.CPP, profiles.LAC, profiles.UCPP}[i%3]
		out = append(out, plan(id, typ, nhs(i), func(p *PlanFacts) {
			switch i % 5 {
			case 0:
				p.Start = now.AddDate(-1, 0, 0)
				p.Updated = now.AddDate(-1, 0, 0)
			case 1:
				p.End = now.AddDate(6, 0, 0)
			case 2:
				p.Start = now.AddDate(0, 0, 3)
			}
		}))
		if i%4 == 0 { // a duplicate upload
			out = append(out, plan(id+"-dup", typ, nhs(i), nil))
		}
		if i%6 == 0 { // withdrawn, its identifier now on p(i+1) and p(i+2)
			w := plan(id+"-err", profiles.CPP, nhs(1000+i), func(p *PlanFacts) { p.Deleted, p.Identifiers = true, []string{"s|" + id} })
			out = append(out, w)
			out[len(out)-2].Identifiers = append(out[len(out)-2].Identifiers, "s|"+id)
			if i%12 == 0 {
				w2 := plan(id+"-err2", profiles.CPP, nhs(2000+i), func(p *PlanFacts) { p.Deleted, p.Identifiers = true, []string{"s|" + id} })
				out = append(out, w2)
			}
		}
	}
	r := rand.New(rand.NewSource(1))
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func scan(plans []PlanFacts, org *OrgFacts, l Listing) Result {
	s := NewScan(now, DefaultThresholds(), l)
	var p PlanFacts // one value, reused: Add must not keep it
	for i := range plans {
		p = plans[i]
		s.Add(&p)
	}
	return s.Result(org)
}

// TestScan_ListsAtMostPerRuleCountsEverything: at two per rule a report
// lists each rule's first two findings by key, counts every finding, and
// says how many it left out.
func TestScan_ListsAtMostPerRuleCountsEverything(t *testing.T) {
	plans := dirtyPlans()
	org := &OrgFacts{ID: "la001", Updated: now.AddDate(-2, 0, 0), OfficeHours: []string{"0300 1"}, EmergencyDuty: []string{"03001"}}
	all := Report(now, DefaultThresholds(), plans, org)
	want := map[Rule][]Finding{}
	for _, f := range all {
		want[f.Rule] = append(want[f.Rule], f)
	}
	for _, r := range Rules {
		require.NotEmpty(t, want[r], "the plans must trip %s", r)
	}
	require.Greater(t, len(want[NHSNumberCorrected]), 2)

	res := scan(plans, org, Listing{PerRule: 2})
	var listed []Finding
	for _, r := range Rules {
		n := len(want[r])
		assert.Equal(t, n, res.Counts[r], "%s: count", r)
		k := min(n, 2)
		listed = append(listed, want[r][:k]...)
		assert.Equal(t, n-k, res.Unlisted[r], "%s: not listed", r)
	}
	assert.Equal(t, listed, res.Listed)

	counts := scan(plans, org, Listing{})
	assert.Empty(t, counts.Listed, "PerRule 0 lists nothing")
	assert.Equal(t, res.Counts, counts.Counts)
}

// TestScan_PagesGiveEveryFindingOnce: following a rule's pages from the
// start, each after the last key of the one before, gives the rule's
// findings in order, each once, for every page size.
func TestScan_PagesGiveEveryFindingOnce(t *testing.T) {
	plans := dirtyPlans()
	all := Report(now, DefaultThresholds(), plans, nil)
	for _, r := range Rules {
		var want []Finding
		for _, f := range all {
			if f.Rule == r {
				want = append(want, f)
			}
		}
		for _, size := range []int{1, 2, 3, 50} {
			var got []Finding
			l := Listing{PerRule: size, Rule: r}
			for pages := 0; ; pages++ {
				require.Less(t, pages, 100, "paging does not end")
				res := scan(plans, nil, l)
				require.LessOrEqual(t, len(res.Listed), size)
				for _, f := range res.Listed {
					assert.Equal(t, r, f.Rule)
				}
				assert.Equal(t, len(want), res.Counts[r], "the count is the whole rule's on every page")
				got = append(got, res.Listed...)
				if res.Unlisted[r] == 0 {
					break
				}
				assert.Equal(t, len(want)-len(got), res.Unlisted[r])
				l.After = res.Listed[len(res.Listed)-1].Key()
			}
			assert.Equal(t, want, got, "%s in pages of %d", r, size)
		}
	}
}
