package registry

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"time"

	"cpis/fhir"
	"cpis/handlers/internal/parallel"
	"cpis/profiles/quality"
	"cpis/store"
)

// warningPlans bounds the plans read for one written plan's duplicate
// check: one child's plans in one local authority, a handful at most.
const warningPlans = 100

// warn adds to each result for a plan the data-quality warnings of the plan
// as stored (quality.Upload): ucpp-overdue, end-far-future, start-in-future,
// and duplicate-plan against the writing LA's other live plans for the same
// NHS number, read within the caller's own scope (Owner), so a warning never
// tells of another authority's plan. It never refuses the write: if the
// duplicate check cannot read the store, the result says so in an
// information issue instead.
func (r *Registry) warn(ctx context.Context, c Caller, results []Result) {
	r.addWarnings(results, r.readPlans(ctx, c, results))
}

// planCheck is what a unit's warnings are made from: its plans as stored,
// and the caller's live plans about the same NHS numbers once the unit is
// applied.
type planCheck struct {
	now     time.Time
	facts   []*quality.PlanFacts           // by result; nil for a result that is no plan
	checked func(i int) bool               // result i has a duplicate check
	others  map[string][]quality.PlanFacts // by NHS number, the first warningPlans of plans by id, each read once
	unread  map[string]bool                // NHS numbers whose plans could not be read
}

// readPlans reads a unit's planCheck. It may run while the unit is being
// committed (unit runs it beside the commit): the caller's plans are read
// as stored, and then each result's record (written, deleted or found)
// takes the place of any version of it that was read, so the check sees
// the store as the unit leaves it whether the read came before the commit
// or after.
func (r *Registry) readPlans(ctx context.Context, c Caller, results []Result) *planCheck {
	pc := &planCheck{now: r.Now(), facts: make([]*quality.PlanFacts, len(results))}
	// Each plan as stored, on every core.
	parallel.Each(len(results), minPerWorker, func(i int) {
		rec := results[i].Rec
		if results[i].Err != nil || results[i].Deleted || rec.Deleted || rec.Type != "EpisodeOfCare" || rec.Body == nil {
			return
		}
		p, err := quality.ParsePlanFacts(rec.Body, rec.Updated, r.loc)
		if err != nil {
			r.log.Error("data-quality warnings: a stored plan could not be read", slog.String("request_id", c.RequestID),
				slog.String("resource", "EpisodeOfCare/"+rec.ID), slog.String("error", err.Error()))
			return
		}
		pc.facts[i] = &p
	})
	// The live plans' NHS numbers, whose other plans are read at once.
	pc.checked = func(i int) bool {
		return pc.facts[i] != nil && pc.facts[i].Live(pc.now) && results[i].Rec.Subject != "" && c.P != nil && c.P.OrgCode != ""
	}
	var subjects []string
	seen := map[string]bool{}
	for i := range results {
		if s := results[i].Rec.Subject; pc.checked(i) && !seen[s] {
			seen[s] = true
			subjects = append(subjects, s)
		}
	}
	// The unit's own plans: what the read finds of them (an earlier
	// version, or this one) is passed over, and they are added as the unit
	// leaves them.
	mine := map[string]int{} // id → result
	for i, res := range results {
		if rec := res.Rec; res.Err == nil && rec.Type == "EpisodeOfCare" && seen[rec.Subject] {
			mine[rec.ID] = i
		}
	}
	var plans map[string][]ownPlan
	plans, pc.unread = r.ownPlans(ctx, c, subjects, mine)
	if len(subjects) == 0 {
		return pc
	}
	since := r.RetainedSince()
	for id, i := range mine {
		rec := results[i].Rec
		if !rec.Deleted && rec.Owner == c.P.OrgCode && (rec.End.IsZero() || !rec.End.Before(since)) && !pc.unread[rec.Subject] {
			plans[rec.Subject] = append(plans[rec.Subject], ownPlan{id: id, facts: pc.facts[i]})
		}
	}
	pc.others = make(map[string][]quality.PlanFacts, len(plans))
	for s, ps := range plans {
		slices.SortFunc(ps, func(a, b ownPlan) int { return strings.Compare(a.id, b.id) })
		for _, o := range ps[:min(len(ps), warningPlans)] {
			if o.facts != nil {
				pc.others[s] = append(pc.others[s], *o.facts)
			}
		}
	}
	return pc
}

// addWarnings adds each plan's warnings, made from pc, to its result.
func (r *Registry) addWarnings(results []Result, pc *planCheck) {
	parallel.Each(len(results), minPerWorker, func(i int) {
		if pc.facts[i] == nil {
			return
		}
		res := &results[i]
		rec := res.Rec
		var others []quality.PlanFacts
		if pc.checked(i) {
			if pc.unread[rec.Subject] {
				res.Warnings = append(res.Warnings, fhir.Issue{Severity: "information", Type: "informational",
					Diagnostics: string(quality.DuplicatePlan) + ": the check for a duplicate plan could not be made; the plan was stored. GET $data-quality lists duplicates"})
			}
			for _, of := range pc.others[rec.Subject] {
				if of.ID != rec.ID {
					others = append(others, of)
				}
			}
		}
		res.Warnings = append(quality.Warnings(quality.Upload(pc.now, r.quality, *pc.facts[i], others)), res.Warnings...)
	})
}

// warnChunk is how many NHS numbers one read of the duplicate check asks
// about; the reads run on every core. A read holds at most warningPlans
// records with their bodies for each (10,000), and each read's records
// are kept only as their facts (ownPlan), so a unit's check holds a few
// reads' bodies at a time however many plans its children have.
const warnChunk = 100

// ownPlan is one of the caller's plans about a child, as the duplicate
// check keeps it: its id and its facts (nil if its body could not be
// read), not its body.
type ownPlan struct {
	id, subject string
	facts       *quality.PlanFacts
}

// ownPlans reads the caller's live plans about each NHS number (at most
// warningPlans each, in no order: readPlans keeps the first warningPlans
// by id of each NHS number's), but those whose id is in skip, a chunk of
// NHS numbers a read; a chunk whose read fails is logged and its NHS
// numbers are in unread. One NHS number is read as a single search is
// (through the store's plan index, where it has one).
func (r *Registry) ownPlans(ctx context.Context, c Caller, subjects []string, skip map[string]int) (map[string][]ownPlan, map[string]bool) {
	chunks := slices.Collect(slices.Chunk(subjects, warnChunk))
	read := make([][]ownPlan, len(chunks))
	errs := make([]error, len(chunks))
	parallel.Each(len(chunks), 1, func(k int) {
		read[k], errs[k] = r.ownPlansOf(ctx, c, chunks[k], skip)
	})
	plans, unread := map[string][]ownPlan{}, map[string]bool{}
	for k, ps := range read {
		if err := errs[k]; err != nil {
			chunk := chunks[k]
			r.log.Error("data-quality warnings: the duplicate check could not read the store", slog.String("request_id", c.RequestID),
				slog.Int("plans", len(chunk)), slog.String("error", err.Error()))
			for _, s := range chunk {
				unread[s] = true
			}
			continue
		}
		for _, p := range ps {
			plans[p.subject] = append(plans[p.subject], p)
		}
	}
	return plans, unread
}

// ownPlansOf is one chunk's read: one search, or one a child if a child
// may have more than its share of the search's limit. The chunk's search
// takes its matches in any order (store.SortNone: no sort of the records
// and their bodies), as it keeps them all unless it reaches its limit, and
// then a child's search takes the child's first by id. Each search's
// records are kept as their facts, but those in skip, which are not read.
func (r *Registry) ownPlansOf(ctx context.Context, c Caller, chunk []string, skip map[string]int) ([]ownPlan, error) {
	q := store.Query{Type: "EpisodeOfCare", Owner: c.P.OrgCode, RetainedSince: r.RetainedSince(), Limit: warningPlans * len(chunk)}
	if len(chunk) == 1 {
		q.Subject = chunk[0]
	} else {
		q.Subjects, q.Sort = chunk, store.SortNone
	}
	recs, _, err := r.st.Search(ctx, q)
	if err != nil {
		return nil, err
	}
	if len(recs) < q.Limit || len(chunk) == 1 {
		return r.ownPlanFacts(recs, skip, nil), nil
	}
	var out []ownPlan
	for _, s := range chunk {
		got, _, err := r.st.Search(ctx, store.Query{Type: "EpisodeOfCare", Subject: s, Owner: c.P.OrgCode,
			RetainedSince: r.RetainedSince(), Limit: warningPlans})
		if err != nil {
			return nil, err
		}
		out = r.ownPlanFacts(got, skip, out)
	}
	return out, nil
}

// ownPlanFacts appends recs, the caller's plans as read, to out as their
// facts, but those whose id is in skip.
func (r *Registry) ownPlanFacts(recs []store.Record, skip map[string]int, out []ownPlan) []ownPlan {
	for _, rec := range recs {
		if _, ok := skip[rec.ID]; ok {
			continue
		}
		p := ownPlan{id: rec.ID, subject: rec.Subject}
		if !rec.Deleted && rec.Body != nil {
			if f, err := quality.ParsePlanFacts(rec.Body, rec.Updated, r.loc); err == nil {
				p.facts = &f
			}
		}
		out = append(out, p)
	}
	return out
}
