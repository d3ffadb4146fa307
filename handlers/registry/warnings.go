package registry

import (
	"context"
	"log/slog"
	"maps"
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
	var plans map[string][]store.Record
	plans, pc.unread = r.ownPlans(ctx, c, subjects)
	if len(subjects) == 0 {
		return pc
	}
	// The unit's own records, as it leaves them, in place of what was read.
	since := r.RetainedSince()
	mine := map[string]store.Record{}
	for _, res := range results {
		if rec := res.Rec; res.Err == nil && rec.Type == "EpisodeOfCare" && seen[rec.Subject] {
			mine[rec.ID] = rec
		}
	}
	for s, recs := range plans {
		plans[s] = slices.DeleteFunc(recs, func(o store.Record) bool { _, ok := mine[o.ID]; return ok })
	}
	for _, rec := range mine {
		if !rec.Deleted && rec.Owner == c.P.OrgCode && (rec.End.IsZero() || !rec.End.Before(since)) && !pc.unread[rec.Subject] {
			plans[rec.Subject] = append(plans[rec.Subject], rec)
		}
	}
	// Each plan read once, on every core, however many of the unit's plans
	// it is another plan of (a unit of 1,000 plans for one child would
	// otherwise read 100 of them for each).
	kept := slices.Collect(maps.Keys(plans))
	parsed := make([][]quality.PlanFacts, len(kept))
	parallel.Each(len(kept), minPerWorker, func(k int) {
		recs := plans[kept[k]]
		slices.SortFunc(recs, func(a, b store.Record) int { return strings.Compare(a.ID, b.ID) })
		for _, o := range recs[:min(len(recs), warningPlans)] {
			if o.Owner != c.P.OrgCode || o.Deleted || o.Body == nil {
				continue
			}
			if of, err := quality.ParsePlanFacts(o.Body, o.Updated, r.loc); err == nil {
				parsed[k] = append(parsed[k], of)
			}
		}
	})
	pc.others = make(map[string][]quality.PlanFacts, len(kept))
	for k, s := range kept {
		pc.others[s] = parsed[k]
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
// about; the reads run on every core.
const warnChunk = 250

// ownPlans reads the caller's live plans about each NHS number (at most
// warningPlans each, the first by id), a chunk of NHS numbers a read; a
// chunk whose read fails is logged and its NHS numbers are in unread. One
// NHS number is read as a single search is (through the store's plan
// index, where it has one).
func (r *Registry) ownPlans(ctx context.Context, c Caller, subjects []string) (map[string][]store.Record, map[string]bool) {
	chunks := slices.Collect(slices.Chunk(subjects, warnChunk))
	read := make([][]store.Record, len(chunks))
	errs := make([]error, len(chunks))
	parallel.Each(len(chunks), 1, func(k int) {
		read[k], errs[k] = r.ownPlansOf(ctx, c, chunks[k])
	})
	plans, unread := map[string][]store.Record{}, map[string]bool{}
	for k, recs := range read {
		if err := errs[k]; err != nil {
			chunk := chunks[k]
			r.log.Error("data-quality warnings: the duplicate check could not read the store", slog.String("request_id", c.RequestID),
				slog.Int("plans", len(chunk)), slog.String("error", err.Error()))
			for _, s := range chunk {
				unread[s] = true
			}
			continue
		}
		for _, rec := range recs {
			if len(plans[rec.Subject]) < warningPlans {
				plans[rec.Subject] = append(plans[rec.Subject], rec)
			}
		}
	}
	return plans, unread
}

// ownPlansOf is one chunk's read: one search, or one a child if a child
// may have more than its share of the search's limit.
func (r *Registry) ownPlansOf(ctx context.Context, c Caller, chunk []string) ([]store.Record, error) {
	q := store.Query{Type: "EpisodeOfCare", Owner: c.P.OrgCode, RetainedSince: r.RetainedSince(), Limit: warningPlans * len(chunk)}
	if len(chunk) == 1 {
		q.Subject = chunk[0]
	} else {
		q.Subjects = chunk
	}
	recs, _, err := r.st.Search(ctx, q)
	if err != nil || len(recs) < q.Limit || len(chunk) == 1 {
		return recs, err
	}
	recs = nil
	for _, s := range chunk {
		got, _, err := r.st.Search(ctx, store.Query{Type: "EpisodeOfCare", Subject: s, Owner: c.P.OrgCode,
			RetainedSince: r.RetainedSince(), Limit: warningPlans})
		if err != nil {
			return nil, err
		}
		recs = append(recs, got...)
	}
	return recs, nil
}
