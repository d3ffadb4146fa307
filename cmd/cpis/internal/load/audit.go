package load

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"time"

	"cpis/fhir"
	"cpis/profiles"
	"cpis/store"
)

// auditBatch is how many access records one Audit call writes: one commit.
const auditBatch = 2000

type auditResult struct {
	written, existing int
	took              time.Duration
}

// auditWindow is the year of access the synthetic records fall in: the 365
// days before asOf.
func auditWindow(asOf time.Time) (from, to time.Time) {
	return asOf.AddDate(0, 0, -365), asOf
}

// countAudit counts the notifying access records recorded in the window
// that touched the data set's local authorities, through the feed's count.
func countAudit(ctx context.Context, st store.Store, d *demoData, from, to time.Time) (int, error) {
	n := 0
	for _, la := range d.las {
		all, err := st.AuditFeedTotal(ctx, la.ods, from)
		if err != nil {
			return 0, err
		}
		later, err := st.AuditFeedTotal(ctx, la.ods, to)
		if err != nil {
			return 0, err
		}
		n += all - later
	}
	return n, nil
}

// seedAudit writes the access records the window lacks: record i of n is
// a clinician's search for a seeded child, recorded at the i/n point of the
// year, so the records follow one another in time as real ones do. Running
// it again with the same options writes nothing; after an interruption it
// writes only the rest. Records are written in batches straight through the
// store's Audit call, a few at once so the store's group commit merges them.
func seedAudit(ctx context.Context, st store.Store, d *demoData, o SeedOptions, out io.Writer) (auditResult, error) {
	from, to := auditWindow(o.AsOf)
	existing, err := countAudit(ctx, st, d, from, to)
	if err != nil {
		return auditResult{}, fmt.Errorf("seed: counting the access records there already: %w", err)
	}
	res := auditResult{existing: existing}
	if existing >= o.AuditEvents || len(d.plans) == 0 {
		return res, nil
	}
	start := time.Now()
	span := to.Sub(from)
	err = writeAudit(ctx, st, existing, o.AuditEvents, max(2, min(o.Workers, 8)), out, "access records", func(i int) store.AuditRecord {
		return accessRecord(d, o.Seed, i, from.Add(time.Duration(float64(span)*float64(i)/float64(o.AuditEvents))))
	})
	if err != nil {
		return res, err
	}
	res.written, res.took = o.AuditEvents-existing, time.Since(start)
	return res, nil
}

// writeAudit writes records first..n-1, made by rec, through the store's
// Audit call in batches of auditBatch, workers batches at once so the
// store's group commit merges them, with a progress bar on out. Memory
// stays bounded by the batches in flight, whatever n is.
func writeAudit(ctx context.Context, st store.Store, first, n, workers int, out io.Writer, what string, rec func(i int) store.AuditRecord) error {
	bar := ProgressBar(out, int64(n-first), what, "records")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	todo := make(chan int)
	errc := make(chan error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			recs := make([]store.AuditRecord, 0, auditBatch)
			for from := range todo {
				recs = recs[:0]
				for i := from; i < min(from+auditBatch, n); i++ {
					recs = append(recs, rec(i))
				}
				if err := st.Audit(ctx, recs); err != nil {
					select {
					case errc <- err:
					default:
					}
					cancel()
					return
				}
				_ = bar.Add(len(recs))
			}
		}()
	}
feed:
	for i := first; i < n; i += auditBatch {
		select {
		case todo <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(todo)
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return fmt.Errorf("seed: writing access records: %w (run it again to write the rest)", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("seed interrupted: %w (run it again to write the rest)", err)
	}
	return bar.Finish()
}

// Synthetic clinicians: this many users in this many NHS trusts.
const (
	clinicians = 5000
	trusts     = 200
)

// accessRecord is the i-th synthetic access: a clinician (health users'
// accesses notify the local authority) searching Flags by a seeded child's
// NHS number and finding its plan, as the server records it.
func accessRecord(d *demoData, seed uint64, i int, at time.Time) store.AuditRecord {
	r := rand.New(rand.NewPCG(seed, uint64(i)|1<<48))
	p := d.plans[r.IntN(len(d.plans))]
	la := d.las[p.la]
	u := r.IntN(clinicians)
	org := u % trusts
	a := profiles.Access{
		ID:       fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", r.Uint32(), r.Uint32()&0xffff, r.Uint32()&0xfff, r.Uint32()&0xfff, r.Uint64()&0xffffffffffff),
		Recorded: at.UTC(), Interaction: "search-type",
		Query:     "Flag?patient:identifier=" + fhir.NHSNumberSystem + "|" + p.nhs,
		NHSNumber: p.nhs, Results: 1,
		UserName: fmt.Sprintf("Clinician %04d", u), UserID: fmt.Sprintf("5551%08d", u), RoleID: fmt.Sprintf("5552%08d", u),
		RoleName: `"Clinical":"Clinical Provision":"Nurse Access Role"`,
		OrgCode:  fmt.Sprintf("T%04d", org), OrgName: fmt.Sprintf("Synthetic NHS Trust %03d", org),
	}
	return store.AuditRecord{
		ID: a.ID, Recorded: a.Recorded, Subject: p.nhs, Owners: []string{la.ods}, Agent: "user:" + a.UserID,
		Notify: true, Body: profiles.AuditEvent(a),
	}
}

// DirSize is the bytes of the files under dir (the database and its
// write-ahead log); 0 if dir is "" or unreadable.
func DirSize(dir string) int64 {
	if dir == "" {
		return 0
	}
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
			n += info.Size()
		}
		return nil
	})
	return n
}

// MB formats bytes as megabytes.
func MB(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }
