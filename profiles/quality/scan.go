package quality

import (
	"container/heap"
	"sort"
	"strings"
	"time"

	"cpis/profiles"
)

// Key is a finding's place in its rule's list: the id of the resource it is
// about, then, for nhs-number-corrected (one finding per plan a plan
// replaced), the reference of the plan replaced. No two findings of a rule
// share a key, so a key is a position to page from.
type Key struct {
	ID      string
	Related string
}

// Less orders keys: by ID, then by Related.
func (k Key) Less(o Key) bool {
	if k.ID != o.ID {
		return k.ID < o.ID
	}
	return k.Related < o.Related
}

// Key is the finding's place in its rule's list.
func (f Finding) Key() Key {
	if f.Rule == NHSNumberCorrected && len(f.Related) > 0 {
		return Key{ID: f.ResourceID, Related: f.Related[0]}
	}
	return Key{ID: f.ResourceID}
}

// Listing says which findings a report lists. Whatever it lists, every
// rule's count is exact.
type Listing struct {
	// PerRule is the most findings listed of each rule, the first by Key;
	// 0 lists none (counts only), a negative number every one.
	PerRule int
	// Rule, when set, lists only that rule's findings that come after After:
	// a page of the rule's list.
	Rule  Rule
	After Key
}

// All lists every finding.
var All = Listing{PerRule: -1}

// Result is a report: every rule's count, and the findings its Listing
// asked for.
type Result struct {
	// Counts is every rule's number of findings, every rule present.
	Counts map[Rule]int
	// Listed are the findings listed, in rule order, then by Key.
	Listed []Finding
	// Unlisted is, for each rule with findings the listing could have
	// listed but did not (beyond PerRule, or past a page), how many.
	Unlisted map[Rule]int
}

// collector counts findings and keeps only those its listing lists: per
// rule a heap of at most PerRule findings, the greatest key on top, so its
// memory is bounded by the listing, not by how many findings there are.
// A finding is offered by its rule and key first (want), and its message
// is written only when it will be kept.
type collector struct {
	l      Listing
	counts []int       // by rule rank
	open   []int       // findings the listing could list, by rule rank
	kept   []byHeapKey // by rule rank
}

func newCollector(l Listing) *collector {
	return &collector{l: l, counts: make([]int, len(Rules)), open: make([]int, len(Rules)), kept: make([]byHeapKey, len(Rules))}
}

// want counts a finding of rule r at key k and reports whether it is to be
// listed: then the caller builds it and passes it to add.
func (c *collector) want(r Rule, k Key) bool {
	i := r.rank()
	c.counts[i]++
	if c.l.Rule != "" && (r != c.l.Rule || !c.l.After.Less(k)) {
		return false
	}
	c.open[i]++
	switch h := c.kept[i]; {
	case c.l.PerRule < 0:
		return true
	case c.l.PerRule == 0:
		return false
	case len(h) < c.l.PerRule:
		return true
	default:
		return k.Less(h[0].key)
	}
}

// add keeps a finding want asked for, dropping the greatest kept one when
// the rule has more than PerRule.
func (c *collector) add(f Finding) {
	i := f.Rule.rank()
	if c.l.PerRule < 0 {
		c.kept[i] = append(c.kept[i], keyed{f.Key(), f})
		return
	}
	heap.Push(&c.kept[i], keyed{f.Key(), f})
	if c.kept[i].Len() > c.l.PerRule {
		heap.Pop(&c.kept[i])
	}
}

func (c *collector) result() Result {
	res := Result{Counts: make(map[Rule]int, len(Rules)), Unlisted: map[Rule]int{}}
	n := 0
	for _, h := range c.kept {
		n += len(h)
	}
	res.Listed = make([]Finding, 0, n)
	for i, r := range Rules {
		h := c.kept[i]
		sort.Slice(h, func(a, b int) bool { return h[a].key.Less(h[b].key) })
		for _, k := range h {
			res.Listed = append(res.Listed, k.f)
		}
		res.Counts[r] = c.counts[i]
		if u := c.open[i] - len(h); u > 0 {
			res.Unlisted[r] = u
		}
	}
	return res
}

type keyed struct {
	key Key
	f   Finding
}

// byHeapKey is a max-heap of findings by key (container/heap).
type byHeapKey []keyed

func (h byHeapKey) Len() int           { return len(h) }
func (h byHeapKey) Less(i, j int) bool { return h[j].key.Less(h[i].key) }
func (h byHeapKey) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *byHeapKey) Push(x any)        { *h = append(*h, x.(keyed)) }
func (h *byHeapKey) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Report is every finding about one LA's data at now: plans must be that
// LA's alone (current versions, and deleted plans as their last live
// version with Deleted set), org its Organization or nil. Findings come in
// rule order, then by Key (resource id). It is a Scan of plans that lists
// everything.
func Report(now time.Time, t Thresholds, plans []PlanFacts, org *OrgFacts) []Finding {
	s := NewScan(now, t, All)
	for i := range plans {
		s.Add(&plans[i])
	}
	return s.Result(org).Listed
}

// Scan computes one LA's report from its plans given one at a time (Add),
// in any order, then Result. It judges each plan's own rules as it comes
// and keeps only the plans the rules across plans need (live plans with an
// NHS number, for duplicate-plan and nhs-number-corrected, and plans
// withdrawn within the correction window), and of the findings only those
// its Listing lists: its memory grows with the LA's live plans, not with
// its findings. Report's doc says which plans it must be given.
type Scan struct {
	now    time.Time
	t      Thresholds
	cutoff time.Time // withdrawals before it are not listed as corrections
	c      *collector
	plans  []kept // for the rules across plans
}

// kept is what the rules across plans read of a plan: about 100 bytes.
type kept struct {
	id, nhs     string
	typ         profiles.PlanType
	start       int64 // UnixNano, when hasStart
	updated     int64 // UnixNano
	identifiers []string
	hasStart    bool
	withdrawn   bool
	live        bool
}

// NewScan starts a report at now under t, listing what l asks for.
func NewScan(now time.Time, t Thresholds, l Listing) *Scan {
	return &Scan{now: now, t: t, cutoff: now.AddDate(0, 0, -t.CorrectionDays), c: newCollector(l)}
}

// Add judges one plan. It does not keep p (the caller may reuse it) but
// may keep p.Identifiers: the caller must not change that slice's elements.
func (s *Scan) Add(p *PlanFacts) {
	now, t := s.now, s.t
	single(now, t, p, s.c)
	if p.withdrawn() {
		if !p.Updated.Before(s.cutoff) {
			s.keep(p, false)
		}
		return
	}
	if !p.live(now) {
		return
	}
	switch {
	case p.Type == profiles.CPP && now.After(p.Updated.AddDate(0, t.CPPReviewMonths, 0)) && s.c.want(CPPReviewOverdue, Key{ID: p.ID}):
		s.c.add(finding(CPPReviewOverdue, "EpisodeOfCare", p.ID, "EpisodeOfCare.meta.lastUpdated",
			"EpisodeOfCare/%s: the child protection plan has not been updated for more than %d months; is a review overdue?", p.ID, t.CPPReviewMonths))
	case p.Type == profiles.LAC && now.After(p.Updated.AddDate(0, t.LACReviewMonths, 0)) && s.c.want(LACReviewOverdue, Key{ID: p.ID}):
		s.c.add(finding(LACReviewOverdue, "EpisodeOfCare", p.ID, "EpisodeOfCare.meta.lastUpdated",
			"EpisodeOfCare/%s: the looked-after child plan has not been updated for more than %d months; is a review overdue?", p.ID, t.LACReviewMonths))
	}
	if p.NHSNumber != "" {
		s.keep(p, true)
	}
}

// keep records what the rules across plans read of p.
func (s *Scan) keep(p *PlanFacts, live bool) {
	k := kept{id: p.ID, nhs: p.NHSNumber, typ: p.Type, updated: p.Updated.UnixNano(), identifiers: p.Identifiers,
		hasStart: !p.Start.IsZero(), withdrawn: p.withdrawn(), live: live}
	if k.hasStart {
		k.start = p.Start.UnixNano()
	}
	s.plans = append(s.plans, k)
}

// Result applies the rules across plans and the Organization's (org, or
// nil) and gives the report.
func (s *Scan) Result(org *OrgFacts) Result {
	now, plans, c := s.now, s.plans, s.c
	type childPlan struct {
		nhs string
		typ profiles.PlanType
	}
	type typeStart struct {
		typ   profiles.PlanType
		start int64
	}
	groups := map[childPlan][]int{}      // live plans by child and type
	byKey := map[string][]int{}          // recent withdrawn plans by identifier
	byTypeStart := map[typeStart][]int{} // recent withdrawn plans by type and start
	for i := range plans {
		p := &plans[i]
		if p.withdrawn {
			for _, k := range p.identifiers {
				byKey[k] = append(byKey[k], i)
			}
			if p.typ != "" && p.hasStart {
				k := typeStart{p.typ, p.start}
				byTypeStart[k] = append(byTypeStart[k], i)
			}
			continue
		}
		if p.typ != "" {
			k := childPlan{p.nhs, p.typ}
			groups[k] = append(groups[k], i)
		}
	}
	for _, g := range groups {
		if len(g) < 2 {
			continue
		}
		ids := make([]string, len(g))
		for j, i := range g {
			ids[j] = plans[i].id
		}
		sort.Strings(ids)
		if !c.want(DuplicatePlan, Key{ID: ids[0]}) {
			continue
		}
		f := finding(DuplicatePlan, "EpisodeOfCare", ids[0], "EpisodeOfCare.patient.identifier",
			"EpisodeOfCare/%s: %d live %s plans for the same NHS number (also EpisodeOfCare/%s); a duplicate upload?",
			ids[0], len(ids), plans[g[0]].typ, strings.Join(ids[1:], ", EpisodeOfCare/"))
		for _, id := range ids[1:] {
			f.Related = append(f.Related, "EpisodeOfCare/"+id)
		}
		c.add(f)
	}
	if len(byKey) > 0 || len(byTypeStart) > 0 {
		// Live plans with a withdrawn plan's type and start: the
		// candidates for an identifier-less correction.
		liveByTypeStart := map[typeStart][]int{}
		if len(byTypeStart) > 0 {
			for i := range plans {
				p := &plans[i]
				if p.typ == "" || !p.hasStart || !p.live {
					continue
				}
				if k := (typeStart{p.typ, p.start}); byTypeStart[k] != nil {
					liveByTypeStart[k] = append(liveByTypeStart[k], i)
				}
			}
		}
		pairs := map[int][]int{} // replacement → withdrawn plans
		for k, ws := range byTypeStart {
			for _, w := range ws {
				if r, ok := soleReplacement(plans, w, liveByTypeStart[k]); ok {
					pairs[r] = append(pairs[r], w)
				}
			}
		}
		corrections(plans, byKey, pairs, c)
	}
	if org != nil {
		organization(now, s.t, org, c)
	}
	return c.result()
}

// corrections offers c an nhs-number-corrected finding for each live plan
// that replaces a recently withdrawn plan of a different NHS number: one
// that shares an identifier with it (byKey), or its sole replacement by
// type and start (byTypeStart).
func corrections(plans []kept, byKey map[string][]int, byTypeStart map[int][]int, c *collector) {
	var seen []int
	for i := range plans {
		r := &plans[i]
		if !r.live || r.nhs == "" {
			continue
		}
		seen = seen[:0]
		add := func(w int) {
			if plans[w].nhs == r.nhs || plans[w].nhs == "" {
				return
			}
			for _, s := range seen {
				if s == w {
					return
				}
			}
			seen = append(seen, w)
		}
		for _, k := range r.identifiers {
			for _, w := range byKey[k] {
				add(w)
			}
		}
		for _, w := range byTypeStart[i] {
			add(w)
		}
		for _, w := range seen {
			ref := "EpisodeOfCare/" + plans[w].id
			if !c.want(NHSNumberCorrected, Key{ID: r.id, Related: ref}) {
				continue
			}
			f := finding(NHSNumberCorrected, "EpisodeOfCare", r.id, "EpisodeOfCare.patient.identifier",
				"EpisodeOfCare/%s replaces EpisodeOfCare/%s, recorded in error for a different NHS number; please confirm the correction", r.id, plans[w].id)
			f.Related = []string{ref}
			c.add(f)
		}
	}
}

func organization(now time.Time, t Thresholds, org *OrgFacts, c *collector) {
	if !org.Updated.IsZero() && now.After(org.Updated.AddDate(0, t.OrganizationMonths, 0)) && c.want(OrganizationStale, Key{ID: org.ID}) {
		c.add(finding(OrganizationStale, "Organization", org.ID, "Organization.meta.lastUpdated",
			"Organization/%s: not updated for more than %d months; are the contact numbers still right?", org.ID, t.OrganizationMonths))
	}
	for _, a := range org.OfficeHours {
		for _, b := range org.EmergencyDuty {
			if na := normalPhone(a); na != "" && na == normalPhone(b) {
				if c.want(ContactNumbersIdentical, Key{ID: org.ID}) {
					c.add(finding(ContactNumbersIdentical, "Organization", org.ID, "Organization.contact.telecom",
						"Organization/%s: the office-hours and emergency duty team numbers are the same number", org.ID))
				}
				return
			}
		}
	}
}
