package quality

import (
	"sort"
	"strings"
	"time"
)

// Upload is the warnings of one plan just written (p, as stored): Single's
// findings, and duplicate-plan when another live plan of the same type for
// the same NHS number is among others. others must be the writing LA's own
// plans for p's NHS number (the caller reads them within the LA's scope),
// so a warning never tells of another authority's plan; p itself may be
// among them. The finding is on p, naming the others, so the LA sees it on
// the write that made the duplicate.
func Upload(now time.Time, t Thresholds, p PlanFacts, others []PlanFacts) []Finding {
	out := Single(now, t, p)
	if !p.live(now) || p.NHSNumber == "" || p.Type == "" {
		return out
	}
	var ids []string
	for i := range others {
		o := &others[i]
		if o.ID != p.ID && o.NHSNumber == p.NHSNumber && o.Type == p.Type && o.live(now) {
			ids = append(ids, o.ID)
		}
	}
	if len(ids) == 0 {
		return out
	}
	sort.Strings(ids)
	f := finding(DuplicatePlan, "EpisodeOfCare", p.ID, "EpisodeOfCare.patient.identifier",
		"EpisodeOfCare/%s: %d live %s plans for the same NHS number (also EpisodeOfCare/%s); a duplicate upload?",
		p.ID, len(ids)+1, p.Type, strings.Join(ids, ", EpisodeOfCare/"))
	for _, id := range ids {
		f.Related = append(f.Related, "EpisodeOfCare/"+id)
	}
	return append(out, f)
}

// Live reports whether the plan's Flag is active at now: not withdrawn,
// finished or cancelled, and its period not over.
func (p *PlanFacts) Live(now time.Time) bool { return p.live(now) }
