// Package load makes synthetic CP-IS data, loads it into a server and its
// store, and measures the server under load against the bare limit of HTTP
// on the machine.
package load

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"cpis/auth"
	"cpis/fhir"
	"cpis/profiles"
	"cpis/store"
)

// Seed limits: every child needs an NHS number from the test-looking range
// 9990000000-9994999999 (mothers of unborn children use 9995000000 up), and
// England has 152 local authorities with children's services.
const (
	MaxChildren = 400000
	MaxLAs      = 152
	// MaxAuditEvents bounds the synthetic access records: a year of
	// national access is about ten million.
	MaxAuditEvents = 50_000_000
)

// Target is what the in-process loader writes through: the server's handler
// (plans take the upload path, transaction Bundles checked and written as
// any upload) and its store (access records go straight to its Audit call,
// the one every audited read makes).
type Target struct {
	Handler http.Handler
	// BaseURL is the server's public FHIR base; uploads go to its path.
	BaseURL          string
	Store            store.Store
	Key              *auth.LocalKey
	Issuer, Audience string
}

// SeedOptions says what to load.
type SeedOptions struct {
	Children, LACount int
	Seed              uint64
	AsOf              time.Time
	RetentionDays     int
	Batch, Workers    int
	// AuditEvents is how many access records the year before AsOf should
	// hold; the loader tops up what is there.
	AuditEvents int
}

// Seed loads synthetic children through the same code path as uploads,
// posting each local authority's plans as transaction Bundles to the
// handler in-process with a system token per local authority, then writes
// a year of access records about them straight to the store.
func Seed(ctx context.Context, t Target, o SeedOptions, out io.Writer) error {
	d := newDemoData(o.Seed, o.Children, o.LACount, o.AsOf, o.RetentionDays)
	l := &loader{t: t, batch: o.Batch, stdout: out}
	start := time.Now()
	if err := l.load(ctx, d, o.Workers); err != nil {
		return err
	}
	elapsed := time.Since(start)
	if o.AuditEvents > 0 {
		res, err := seedAudit(ctx, t.Store, d, o, out)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "access records: %d written in %s (%.0f/s), %d there already\n",
			res.written, res.took.Round(time.Millisecond), float64(res.written)/max(res.took.Seconds(), 1e-9), res.existing)
	}
	fmt.Fprintf(out, "%d of the plans have ended, %d of them more than %d days ago (not served; the server's sweeper purges them); resources: %d created, %d updated, %d unchanged\n",
		d.ended, d.expired, o.RetentionDays, l.created, l.updated, l.unchanged)
	_, err := fmt.Fprintf(out, "seeded %d children: %d plans (CPP %d, LAC %d, UCPP %d), %d local authorities, %s, %.0f resources/s\n",
		o.Children, len(d.plans), d.byType[profiles.CPP], d.byType[profiles.LAC], d.byType[profiles.UCPP], len(d.las),
		elapsed.Round(time.Millisecond), float64(d.resources())/elapsed.Seconds())
	return err
}

// demoLA is one synthetic local authority.
type demoLA struct {
	ods, id, name, officeHours, emergency string
}

// demoPlan is one synthetic plan.
type demoPlan struct {
	la                 int
	ident              string
	typ                profiles.PlanType
	nhs, start, end    string
	expiredAtRetention bool
}

// demoData is the synthetic data set: local authorities and their plans.
type demoData struct {
	las            []demoLA
	plans          []demoPlan
	byType         map[profiles.PlanType]int
	ended, expired int
}

func (d *demoData) resources() int { return len(d.las) + len(d.plans) }

// Fictional place names; with the four kinds of council they name up to
// 152 local authorities.
var (
	placeNames = []string{"Ashcombe", "Brackenford", "Caldermoor", "Dunmere", "Elmsworth", "Fernleigh", "Greywater", "Hollinbury",
		"Ivybridge Vale", "Juniper Downs", "Kestrelford", "Larkhollow", "Marrowby", "Northwold", "Oakhampstead", "Pennyfield",
		"Quarrington", "Ravensmere", "Saltcombe", "Thornbury Heath", "Upperdale", "Vellacott", "Willowmere", "Yarrowby",
		"Alderwick", "Birchwold", "Coldharbour", "Denholm", "Eastmarsh", "Foxcote", "Glenridge", "Hawkmoor",
		"Ironbridge Vale", "Kingsmere", "Lowfield", "Millhaven", "Netherby", "Oxlade"}
	councilKinds = []string{"City Council", "Borough Council", "County Council", "Metropolitan Borough Council"}
)

// newDemoData makes the data set deterministically: each child's plans
// depend only on the seed, the child's number, the number of local
// authorities, the as-of date and the retention period, so a larger run
// extends a smaller one and a re-run reproduces it.
func newDemoData(seed uint64, children, laCount int, asOf time.Time, retentionDays int) *demoData {
	d := &demoData{byType: map[profiles.PlanType]int{}}
	weights := make([]float64, laCount)
	total := 0.0
	lr := rand.New(rand.NewPCG(seed, uint64(laCount)))
	for i := range weights {
		// Local authorities differ in size: up to four times the smallest.
		weights[i] = 1 + 3*lr.Float64()
		total += weights[i]
		d.las = append(d.las, demoLA{
			ods:         fmt.Sprintf("LA%03d", i+1),
			id:          fmt.Sprintf("la%03d", i+1),
			name:        placeNames[i%len(placeNames)] + " " + councilKinds[i/len(placeNames)],
			officeHours: fmt.Sprintf("01632 960%03d", 2*i), // Ofcom's range for fiction
			emergency:   fmt.Sprintf("01632 960%03d", 2*i+1),
		})
	}
	day := func(t time.Time) string { return t.Format("2006-01-02") }
	childNHS, motherNHS := nhsNumbers(999000000), nhsNumbers(999500000)
	for i := 0; i < children; i++ {
		child, mother := childNHS(), motherNHS()
		r := rand.New(rand.NewPCG(seed, uint64(i)+1<<32))
		pick := r.Float64() * total
		la := 0
		for la < laCount-1 && pick >= weights[la] {
			pick -= weights[la]
			la++
		}
		// About 55% looked after, 40% on a child protection plan and 5%
		// unborn (held against the mother's NHS number).
		typ, nhs := profiles.LAC, child
		switch u := r.Float64(); {
		case u < 0.05:
			typ, nhs = profiles.UCPP, mother
		case u < 0.45:
			typ = profiles.CPP
		}
		days := func(lo, hi int) time.Duration { return time.Duration(lo+r.IntN(hi-lo+1)) * 24 * time.Hour }
		plan := demoPlan{la: la, ident: fmt.Sprintf("C%07d-1", i+1), typ: typ, nhs: nhs}
		start := asOf.Add(-days(14, 4*365))
		if typ == profiles.UCPP {
			start = asOf.Add(-days(14, 240))
		}
		// About 78% open, 18% ended within the retention period and 4%
		// ended before it (hidden at once, purged by the sweeper).
		switch u := r.Float64(); {
		case u < 0.78:
		case u < 0.96:
			end := asOf.Add(-days(1, retentionDays-1))
			if !start.Before(end) {
				start = end.Add(-days(30, 700))
			}
			plan.end = day(end)
		default:
			end := asOf.Add(-days(retentionDays+1, retentionDays+365))
			start = end.Add(-days(30, 700))
			plan.end, plan.expiredAtRetention = day(end), true
		}
		plan.start = day(start)
		d.add(plan)
		// Some children who became looked after in the last year were on a
		// child protection plan before.
		if typ == profiles.LAC && plan.end == "" && start.After(asOf.AddDate(-1, 0, 0)) && r.Float64() < 0.4 {
			end := start.Add(-days(1, 120))
			d.add(demoPlan{la: la, ident: fmt.Sprintf("C%07d-2", i+1), typ: profiles.CPP, nhs: child,
				start: day(end.Add(-days(60, 700))), end: day(end), expiredAtRetention: end.Before(asOf.AddDate(0, 0, -retentionDays))})
		}
	}
	return d
}

func (d *demoData) add(p demoPlan) {
	d.plans = append(d.plans, p)
	d.byType[p.typ]++
	if p.end != "" {
		d.ended++
	}
	if p.expiredAtRetention {
		d.expired++
	}
}

// nhsNumbers returns a generator of the valid NHS numbers (Modulus 11) from
// the nine-digit prefix from on, in order.
func nhsNumbers(from int) func() string {
	next := from
	return func() string {
		for ; ; next++ {
			nine := fmt.Sprintf("%09d", next)
			if d := fhir.NHSNumberCheckDigit(nine); d >= 0 {
				next++
				return nine + string(rune('0'+d))
			}
		}
	}
}

// loader posts the data set's Bundles to the server in-process.
type loader struct {
	t      Target
	batch  int
	stdout io.Writer

	mu                          sync.Mutex
	useBatch                    bool // the store cannot apply transactions
	created, updated, unchanged int
	started                     time.Time
}

// job is one Bundle: some of one local authority's resources.
type job struct {
	la      demoLA
	entries [][]byte
}

// load posts every Bundle with a few workers and a progress bar.
func (l *loader) load(ctx context.Context, d *demoData, workers int) error {
	l.started = time.Now().UTC().Truncate(time.Millisecond)
	err := postAll(ctx, d, l.batch, workers, l.stdout, "seeding", l.post)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("seed interrupted: %w (each Bundle is all or nothing; run it again to finish)", err)
	}
	return err
}

// postAll cuts the data set into Bundles of batch entries and posts them
// with workers at once, with a progress bar; it stops at the first failure.
func postAll(ctx context.Context, d *demoData, batch, workers int, out io.Writer, what string, post func(context.Context, job) error) error {
	jobs, err := bundleJobs(d, batch)
	if err != nil {
		return err
	}
	bar := ProgressBar(out, int64(d.resources()), what, "resources")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	todo := make(chan job)
	errc := make(chan error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range todo {
				if err := post(ctx, j); err != nil {
					errc <- err
					cancel()
					return
				}
				_ = bar.Add(len(j.entries))
			}
		}()
	}
feed:
	for _, j := range jobs {
		select {
		case todo <- j:
		case <-ctx.Done():
			break feed
		}
	}
	close(todo)
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return bar.Finish()
}

// post sends one Bundle as a transaction, or as a batch when the store
// cannot apply transactions (MongoDB without a replica set).
func (l *loader) post(ctx context.Context, j job) error {
	l.mu.Lock()
	typ := "transaction"
	if l.useBatch {
		typ = "batch"
	}
	l.mu.Unlock()
	status, body, err := l.send(ctx, j, typ)
	if err != nil {
		return err
	}
	if status == http.StatusNotImplemented && typ == "transaction" {
		l.mu.Lock()
		l.useBatch = true
		l.mu.Unlock()
		return l.post(ctx, j)
	}
	if status != http.StatusOK {
		return fmt.Errorf("seed: a %s Bundle for %s was refused: %d %s", typ, j.la.ods, status, firstDiagnostics(body))
	}
	var resp struct {
		Entry []struct {
			Response struct {
				Status       string          `json:"status"`
				LastModified string          `json:"lastModified"`
				Outcome      json.RawMessage `json:"outcome"`
			} `json:"response"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return fmt.Errorf("seed: reading the answer for %s: %w", j.la.ods, err)
	}
	var created, updated, unchanged int
	for i, e := range resp.Entry {
		r := e.Response
		switch {
		case strings.HasPrefix(r.Status, "201"):
			created++
		case !strings.HasPrefix(r.Status, "200"):
			return fmt.Errorf("seed: entry %d of a batch for %s was refused: %s %s", i, j.la.ods, r.Status, firstDiagnostics(r.Outcome))
		case r.LastModified < fhir.Instant(l.started):
			unchanged++
		default:
			updated++
		}
	}
	l.mu.Lock()
	l.created, l.updated, l.unchanged = l.created+created, l.updated+updated, l.unchanged+unchanged
	l.mu.Unlock()
	return nil
}

// send posts the Bundle to the handler in-process with a token for the
// local authority, and returns the status and body.
func (l *loader) send(ctx context.Context, j job, typ string) (int, []byte, error) {
	tok, err := l.t.Key.MintSystem(auth.SystemToken{
		ClientID: "cpis-seed", OrgCode: j.la.ods, OrgName: j.la.name,
		Scopes: []string{"system/EpisodeOfCare.write", "system/Organization.write"},
	}, l.t.Issuer, l.t.Audience, time.Now(), 10*time.Minute)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.t.BaseURL, bytes.NewReader(bundleBody(j, typ)))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", fhir.MIME)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Prefer", "return=minimal")
	w := &response{header: http.Header{}}
	l.t.Handler.ServeHTTP(w, req)
	return w.status, w.body.Bytes(), nil
}

// response collects an in-process answer.
type response struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *response) Header() http.Header { return r.header }

func (r *response) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *response) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}

// firstDiagnostics is the first issue's diagnostics of an OperationOutcome.
func firstDiagnostics(b []byte) string {
	var oo struct {
		Issue []struct {
			Diagnostics string   `json:"diagnostics"`
			Expression  []string `json:"expression"`
		} `json:"issue"`
	}
	if json.Unmarshal(b, &oo) != nil || len(oo.Issue) == 0 {
		return ""
	}
	is := oo.Issue[0]
	if len(is.Expression) > 0 {
		return is.Expression[0] + ": " + is.Diagnostics
	}
	return is.Diagnostics
}

// Bundle entries.

type seedEntry struct {
	Resource any          `json:"resource"`
	Request  seedEntryReq `json:"request"`
}

type seedEntryReq struct {
	Method string `json:"method"`
	URL    string `json:"url"`
}

type seedContact struct {
	Purpose fhir.CodeableConcept `json:"purpose"`
	Telecom []fhir.ContactPoint  `json:"telecom"`
}

type seedOrganization struct {
	ResourceType string            `json:"resourceType"`
	ID           string            `json:"id"`
	Identifier   []fhir.Identifier `json:"identifier"`
	Name         string            `json:"name"`
	Contact      []seedContact     `json:"contact"`
}

type seedEpisodeOfCare struct {
	ResourceType         string                 `json:"resourceType"`
	Identifier           []fhir.Identifier      `json:"identifier"`
	Status               string                 `json:"status"`
	Type                 []fhir.CodeableConcept `json:"type"`
	Patient              fhir.Reference         `json:"patient"`
	ManagingOrganization fhir.Reference         `json:"managingOrganization"`
	Period               fhir.Period            `json:"period"`
}

// orgEntry puts the local authority's Organization by id.
func orgEntry(la demoLA) ([]byte, error) {
	contact := func(purpose, phone string) seedContact {
		return seedContact{
			Purpose: fhir.CodeableConcept{Coding: []fhir.Coding{{System: profiles.ContactPurposeSystem, Code: purpose}}},
			Telecom: []fhir.ContactPoint{{System: "phone", Value: phone}},
		}
	}
	return fhir.Marshal(seedEntry{
		Resource: seedOrganization{
			ResourceType: "Organization", ID: la.id,
			Identifier: []fhir.Identifier{{System: fhir.ODSSystem, Value: la.ods}},
			Name:       la.name,
			Contact:    []seedContact{contact(profiles.ContactOfficeHours, la.officeHours), contact(profiles.ContactEmergencyDuty, la.emergency)},
		},
		Request: seedEntryReq{Method: http.MethodPut, URL: "Organization/" + la.id},
	})
}

// planEntry puts a plan by the local authority's own plan identifier
// (conditional update), so a re-run finds the plans it made before.
func planEntry(la demoLA, p demoPlan) ([]byte, error) {
	id := fhir.Identifier{System: "https://" + strings.ToLower(la.ods) + ".example/plan-id", Value: p.ident}
	status := "active"
	if p.end != "" {
		status = "finished"
	}
	return fhir.Marshal(seedEntry{
		Resource: seedEpisodeOfCare{
			ResourceType:         "EpisodeOfCare",
			Identifier:           []fhir.Identifier{id},
			Status:               status,
			Type:                 []fhir.CodeableConcept{{Coding: []fhir.Coding{{System: profiles.PlanTypeSystem, Code: string(p.typ), Display: p.typ.Display()}}}},
			Patient:              fhir.Reference{Identifier: &fhir.Identifier{System: fhir.NHSNumberSystem, Value: p.nhs}},
			ManagingOrganization: fhir.Reference{Identifier: &fhir.Identifier{System: fhir.ODSSystem, Value: la.ods}, Display: la.name},
			Period:               fhir.Period{Start: p.start, End: p.end},
		},
		Request: seedEntryReq{Method: http.MethodPut, URL: "EpisodeOfCare?identifier=" + id.Token()},
	})
}
