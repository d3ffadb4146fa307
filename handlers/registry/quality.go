package registry

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"cpis/auth"
	"cpis/fhir"
	"cpis/profiles/quality"
	"cpis/store"
)

// qualityPage is how many plans one store call of the data-quality report
// reads.
const qualityPage = 1000

// MayReadQuality checks the caller may ask for a data-quality report: a
// local authority system with system/DataQuality.read (or system/*.read).
func MayReadQuality(p *auth.Principal) error {
	if p.IsLA() && p.Allows("DataQuality", auth.Read) {
		return nil
	}
	if !p.IsLA() {
		return fhir.Errorf(fhir.KindForbidden, "Access has been denied to process this request: the data-quality report is for local authority systems")
	}
	return fhir.Errorf(fhir.KindForbidden, "Access has been denied to process this request: the token has no system/DataQuality.read scope")
}

// DataQuality reports the data-quality findings on the caller's own plans
// (those still retained) and its own Organization, under the thresholds th.
// It reads only the calling local authority's records, so another's plans
// for the same child are never counted or shown. Findings name resources
// by reference, never by NHS number, so the read is not audited. A store
// error fails the report: never an empty one.
func (r *Registry) DataQuality(ctx context.Context, c Caller, th quality.Thresholds) ([]quality.Finding, error) {
	if err := MayReadQuality(c.P); err != nil {
		return nil, err
	}
	ods := c.P.OrgCode
	if ods == "" {
		return nil, fhir.Errorf(fhir.KindForbidden, "Access has been denied to process this request: the token names no organisation")
	}
	now := r.Now()
	since := r.RetainedSince()
	plans, err := r.qualityPlans(ctx, ods, since)
	if err != nil {
		return nil, storeErr(c, err)
	}
	// Plans deleted (recorded in error) within the correction window, as
	// they were before: nhs-number-corrected pairs them with live plans.
	deleted, err := r.deletedPlans(ctx, ods, now.AddDate(0, 0, -th.CorrectionDays))
	if err != nil {
		return nil, storeErr(c, err)
	}
	plans = append(plans, deleted...)
	var org *quality.OrgFacts
	orgs, _, err := r.st.Search(ctx, store.Query{Type: "Organization", Key: laKey(ods), Limit: 1})
	if err != nil {
		return nil, storeErr(c, err)
	}
	for _, o := range orgs {
		if o.Owner != ods || o.Deleted || o.Body == nil {
			continue
		}
		if org, err = quality.ParseOrgFacts(o.Body, o.Updated); err != nil {
			return nil, fmt.Errorf("registry: data quality: Organization/%s: %w", o.ID, err)
		}
	}
	return quality.Report(now, th, plans, org), nil
}

// deletedPlans are the LA's plans deleted at or after since (store
// tombstones), each as the facts of the version it deleted, with Deleted set
// and Updated the time of the deletion. A store that cannot list them fails
// the report: a report without them would say no NHS number was corrected.
func (r *Registry) deletedPlans(ctx context.Context, ods string, since time.Time) ([]quality.PlanFacts, error) {
	dl, ok := r.st.(store.DeletedLister)
	if !ok {
		return nil, errors.New("registry: data quality: the store cannot list deleted plans")
	}
	var out []quality.PlanFacts
	after := ""
	for {
		recs, err := dl.Deleted(ctx, "EpisodeOfCare", ods, since, after, qualityPage)
		if err != nil {
			return nil, err
		}
		for _, rec := range recs {
			if rec.Owner != ods || !rec.Deleted || rec.Body == nil {
				continue
			}
			pf, err := quality.ParsePlanFacts(rec.Body, rec.Updated, r.loc)
			if err != nil {
				return nil, fmt.Errorf("registry: data quality: deleted EpisodeOfCare/%s: %w", rec.ID, err)
			}
			pf.Deleted = true
			out = append(out, pf)
		}
		if len(recs) < qualityPage {
			return out, nil
		}
		after = recs[len(recs)-1].ID
	}
}

// qualityPlans reads the facts of the LA's retained live plans: one owner
// scan in pages, each page's bodies decoded by a pool of workers while the
// next page is read, so reading and decoding overlap on a multi-core host
// (the largest LA's report reads 150,000 plans). Order is not kept: the
// report sorts its findings.
func (r *Registry) qualityPlans(ctx context.Context, ods string, since time.Time) ([]quality.PlanFacts, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pages := make(chan []store.Record, 2)
	var fetchErr error // written before pages is closed
	go func() {
		defer close(pages)
		after := ""
		for {
			recs, _, err := r.st.Search(ctx, store.Query{Type: "EpisodeOfCare", Owner: ods, RetainedSince: since, After: after, Limit: qualityPage})
			if err != nil {
				fetchErr = err
				return
			}
			select {
			case pages <- recs:
			case <-ctx.Done():
				return
			}
			if len(recs) < qualityPage {
				return
			}
			after = recs[len(recs)-1].ID
		}
	}()
	workers := runtime.GOMAXPROCS(0)
	parsed := make([][]quality.PlanFacts, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for recs := range pages {
				for _, rec := range recs {
					if errs[w] != nil || rec.Owner != ods || rec.Deleted || rec.Body == nil {
						continue
					}
					pf, err := quality.ParsePlanFacts(rec.Body, rec.Updated, r.loc)
					if err != nil {
						errs[w] = fmt.Errorf("registry: data quality: EpisodeOfCare/%s: %w", rec.ID, err)
						cancel()
						continue
					}
					parsed[w] = append(parsed[w], pf)
				}
			}
		}(w)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	if fetchErr != nil {
		return nil, fetchErr
	}
	n := 0
	for _, p := range parsed {
		n += len(p)
	}
	out := make([]quality.PlanFacts, 0, n)
	for _, p := range parsed {
		out = append(out, p...)
	}
	return out, nil
}
