package registry

import (
	"context"
	"log/slog"

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
// tells of another authority's plan. It runs after the commit and never
// refuses the write: if the duplicate check cannot read the store, the
// result says so in an information issue instead.
func (r *Registry) warn(ctx context.Context, c Caller, results []Result) {
	now := r.Now()
	// Each plan on its own (its own reads, its own result), on every core.
	parallel.Each(len(results), minPerWorker, func(i int) {
		res := &results[i]
		rec := res.Rec
		if res.Err != nil || res.Deleted || rec.Deleted || rec.Type != "EpisodeOfCare" || rec.Body == nil {
			return
		}
		p, err := quality.ParsePlanFacts(rec.Body, rec.Updated, r.loc)
		if err != nil {
			r.log.Error("data-quality warnings: a stored plan could not be read", slog.String("request_id", c.RequestID),
				slog.String("resource", "EpisodeOfCare/"+rec.ID), slog.String("error", err.Error()))
			return
		}
		var others []quality.PlanFacts
		if p.Live(now) && rec.Subject != "" && c.P != nil && c.P.OrgCode != "" {
			recs, _, err := r.st.Search(ctx, store.Query{Type: "EpisodeOfCare", Subject: rec.Subject, Owner: c.P.OrgCode,
				RetainedSince: r.RetainedSince(), Limit: warningPlans})
			if err != nil {
				r.log.Error("data-quality warnings: the duplicate check could not read the store", slog.String("request_id", c.RequestID),
					slog.String("resource", "EpisodeOfCare/"+rec.ID), slog.String("error", err.Error()))
				res.Warnings = append(res.Warnings, fhir.Issue{Severity: "information", Type: "informational",
					Diagnostics: string(quality.DuplicatePlan) + ": the check for a duplicate plan could not be made; the plan was stored. GET $data-quality lists duplicates"})
			}
			for _, o := range recs {
				if o.Owner != c.P.OrgCode || o.Deleted || o.Body == nil || o.ID == rec.ID {
					continue
				}
				of, err := quality.ParsePlanFacts(o.Body, o.Updated, r.loc)
				if err != nil {
					continue
				}
				others = append(others, of)
			}
		}
		res.Warnings = append(quality.Warnings(quality.Upload(now, r.quality, p, others)), res.Warnings...)
	})
}
