package registry

import (
	"context"
	"errors"
	"fmt"
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
// (those still retained) and its own Organization, under the thresholds th,
// listing what l asks for (every count is exact whatever it lists). It
// reads only the calling local authority's records, so another's plans for
// the same child are never counted or shown. Findings name resources by
// reference, never by NHS number, so the read is not audited. A store
// error fails the report: never an empty one.
//
// The plans are streamed from the store (store.OwnerScanner) and judged one
// at a time (quality.Scan): the request holds the findings it lists and a
// compact entry per live plan for the rules across plans, never the
// authority's records or all its findings.
func (r *Registry) DataQuality(ctx context.Context, c Caller, th quality.Thresholds, l quality.Listing) (quality.Result, error) {
	if err := MayReadQuality(c.P); err != nil {
		return quality.Result{}, err
	}
	ods := c.P.OrgCode
	if ods == "" {
		return quality.Result{}, fhir.Errorf(fhir.KindForbidden, "Access has been denied to process this request: the token names no organisation")
	}
	now := r.Now()
	scan := quality.NewScan(now, th, l)
	// Plans deleted (recorded in error) within the correction window, as
	// they were before: nhs-number-corrected pairs them with live plans.
	if err := r.deletedPlans(ctx, ods, now.AddDate(0, 0, -th.CorrectionDays), scan); err != nil {
		return quality.Result{}, storeErr(c, err)
	}
	if err := r.qualityPlans(ctx, ods, r.RetainedSince(), scan); err != nil {
		return quality.Result{}, storeErr(c, err)
	}
	var org *quality.OrgFacts
	orgs, _, err := r.st.Search(ctx, store.Query{Type: "Organization", Key: laKey(ods), Limit: 1})
	if err != nil {
		return quality.Result{}, storeErr(c, err)
	}
	for _, o := range orgs {
		if o.Owner != ods || o.Deleted || o.Body == nil {
			continue
		}
		if org, err = quality.ParseOrgFacts(o.Body, o.Updated); err != nil {
			return quality.Result{}, fmt.Errorf("registry: data quality: Organization/%s: %w", o.ID, err)
		}
	}
	return scan.Result(org), nil
}

// deletedPlans adds to scan the LA's plans deleted at or after since (store
// tombstones), each as the facts of the version it deleted, with Deleted set
// and Updated the time of the deletion. A store that cannot list them fails
// the report: a report without them would say no NHS number was corrected.
func (r *Registry) deletedPlans(ctx context.Context, ods string, since time.Time, scan *quality.Scan) error {
	dl, ok := r.st.(store.DeletedLister)
	if !ok {
		return errors.New("registry: data quality: the store cannot list deleted plans")
	}
	after := ""
	for {
		recs, err := dl.Deleted(ctx, "EpisodeOfCare", ods, since, after, qualityPage)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			if rec.Owner != ods || !rec.Deleted || rec.Body == nil {
				continue
			}
			pf, err := quality.ParsePlanFacts(rec.Body, rec.Updated, r.loc)
			if err != nil {
				return fmt.Errorf("registry: data quality: deleted EpisodeOfCare/%s: %w", rec.ID, err)
			}
			pf.Deleted = true
			scan.Add(&pf)
		}
		if len(recs) < qualityPage {
			return nil
		}
		after = recs[len(recs)-1].ID
	}
}

// qualityPlans adds to scan the facts of the LA's retained live plans, read
// in one pass over the store (store.OwnerScanner). The store's scan runs on
// its own goroutine and copies the bodies into a few fixed batches; this
// one decodes and judges each batch and hands it back: reading and judging
// overlap on a multi-core host, and what is in flight is bounded by the
// batches (qualityBatches of qualityBatch bodies), never the authority's
// size. A store that cannot scan fails the report.
func (r *Registry) qualityPlans(ctx context.Context, ods string, since time.Time, scan *quality.Scan) error {
	sc, ok := r.st.(store.OwnerScanner)
	if !ok {
		return errors.New("registry: data quality: the store cannot scan an authority's plans")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	free := make(chan *planBatch, qualityBatches)
	for i := 0; i < qualityBatches; i++ {
		free <- &planBatch{}
	}
	full := make(chan *planBatch, qualityBatches)
	var scanErr error // written before full is closed
	go func() {
		defer close(full)
		b := <-free
		scanErr = sc.ScanOwner(ctx, "EpisodeOfCare", ods, since, func(rec *store.Record) error {
			if rec.Owner != ods || rec.Deleted || rec.Body == nil {
				return nil
			}
			b.add(rec)
			if len(b.plans) < qualityBatch {
				return nil
			}
			full <- b // never blocks: there are only qualityBatches batches
			select {
			case b = <-free:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		if scanErr == nil && len(b.plans) > 0 {
			full <- b
		}
	}()
	var parseErr error
	for b := range full {
		for i := range b.plans {
			if parseErr != nil {
				break
			}
			bp := &b.plans[i]
			pf, err := quality.ParsePlanFacts(b.body(i), bp.updated, r.loc)
			if err != nil {
				parseErr = fmt.Errorf("registry: data quality: EpisodeOfCare/%s: %w", bp.id, err)
				cancel()
				break
			}
			scan.Add(&pf)
		}
		b.reset()
		free <- b
	}
	if parseErr != nil {
		return parseErr
	}
	return scanErr
}

// qualityBatch is how many plans' bodies one batch of qualityPlans holds,
// and qualityBatches how many batches there are.
const (
	qualityBatch   = 256
	qualityBatches = 3
)

// planBatch is a run of scanned plans, their bodies copied end to end into
// one buffer that is reused from batch to batch.
type planBatch struct {
	buf   []byte
	plans []batchPlan
}

type batchPlan struct {
	id      string
	updated time.Time
	end     int // the body is buf[previous end:end]
}

func (b *planBatch) add(rec *store.Record) {
	b.buf = append(b.buf, rec.Body...)
	b.plans = append(b.plans, batchPlan{id: rec.ID, updated: rec.Updated, end: len(b.buf)})
}

func (b *planBatch) body(i int) []byte {
	from := 0
	if i > 0 {
		from = b.plans[i-1].end
	}
	return b.buf[from:b.plans[i].end]
}

func (b *planBatch) reset() {
	b.buf, b.plans = b.buf[:0], b.plans[:0]
}
