package registry_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"cpis/fhir"
	"cpis/handlers/registry"
	"cpis/profiles/quality"
	"cpis/store"
	"cpis/store/mongo"
	"cpis/store/mongo/mongotest"
	"cpis/store/sqlite"
)

// The data-quality report for the largest local authority, at 150,000
// children (issue 18: within 2 s), through the registry over a real store
// seeded through its bulk path (store.Loader). Run with
//
//	go test ./handlers/registry -run '^$' -bench DataQuality150k -benchtime 5x
//
// Benchmarks do not run in go test ./...

// dqChildren is the largest LA's children; another LA holds a fifteenth
// as many plans, some for the same children.
const dqChildren = 150000

var dqNow = time.Date(2026, 6, 15, 10, 0, 0, 0, time.UTC)

func BenchmarkDataQuality150k(b *testing.B) {
	st, err := sqlite.Open(b.TempDir(), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	benchDataQuality(b, st, dqChildren)
}

// BenchmarkDataQuality15kFerretDB runs the MongoDB store's path on the
// embedded FerretDB at a tenth of the size: FerretDB's SQLite handler
// scans the whole collection in Go for every query (deps/README), so each
// page of the owner scan costs a full scan, and 150,000 children would take
// minutes: a test server, not a production store's figure.
func BenchmarkDataQuality15kFerretDB(b *testing.B) {
	dir := b.TempDir()
	srv, err := mongotest.Start(dir, "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Stop()
	st, err := mongo.Open(context.Background(), srv.URI, mongotest.FreshDB(), mongo.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	benchDataQuality(b, st, dqChildren/10)
}

func benchDataQuality(b *testing.B, st store.Store, children int) {
	ctx := context.Background()
	start := time.Now()
	items := dqItems(children)
	i := 0
	if err := st.(store.Loader).Load(ctx, func() (store.Item, error) {
		if i == len(items) {
			return store.Item{}, io.EOF
		}
		i++
		return items[i-1], nil
	}); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d records in %s", len(items), time.Since(start).Round(time.Millisecond))
	london, err := time.LoadLocation("Europe/London")
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reg, err := registry.New(registry.Config{Store: st, Location: london, RetentionDays: 365, Log: log, SecurityLog: log,
		SubjectKey: []byte("registry-bench-key-16"), Now: func() time.Time { return dqNow }})
	if err != nil {
		b.Fatal(err)
	}
	th := quality.DefaultThresholds()
	b.ReportAllocs()
	runtime.GC()
	stop := make(chan struct{})
	peak := peakHeap(stop)
	cpu0 := cpuTime()
	b.ResetTimer()
	var res quality.Result
	var size int
	for n := 0; n < b.N; n++ {
		// The report as $data-quality serves it: every count, the first
		// 100 findings of each rule listed.
		res, err = reg.DataQuality(ctx, registry.SweepCaller("LA001"), th, quality.Listing{PerRule: 100})
		if err != nil {
			b.Fatal(err)
		}
		size = len(quality.ReportOutcome(res, nil).JSON())
	}
	b.StopTimer()
	close(stop)
	// The most heap the process used during the reports, over what it used
	// before (the seeded store's data is not in the Go heap).
	b.ReportMetric(float64(<-peak)/(1<<20), "peak-heap-MB")
	// The CPU time the report took, apart from the wall time: on a shared
	// machine the wall time is mostly waiting for a core.
	b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
	total := 0
	for _, r := range []quality.Rule{quality.UCPPOverdue, quality.CPPReviewOverdue, quality.LACReviewOverdue,
		quality.DuplicatePlan, quality.EndFarFuture, quality.StartInFuture, quality.NHSNumberCorrected, quality.OrganizationStale} {
		if res.Counts[r] == 0 {
			b.Fatalf("no %s finding: the benchmark must exercise every rule", r)
		}
		total += res.Counts[r]
	}
	b.ReportMetric(float64(total), "findings")
	b.ReportMetric(float64(len(res.Listed)), "listed")
	b.ReportMetric(float64(size), "outcome-bytes")
}

// dqItems are LA001's 150,000 children, each with a plan (a mix of types,
// ages and update times; 1% duplicate uploads; 1% deleted in error and
// uploaded again for another child; some dated in the future), its
// Organization, and LA002's plans.
func dqItems(children int) []store.Item {
	types := []string{"CPP", "CPP", "LAC", "UCPP"}
	var items []store.Item
	add := func(recs ...store.Record) { items = append(items, store.Item{Versions: recs}) }
	add(org("LA001", dqNow.AddDate(-2, 0, 0)))
	add(org("LA002", dqNow))
	for i := 0; i < children; i++ {
		nhs := nhsFor(3 * i)
		start := dqNow.AddDate(0, 0, -(i % 700))
		if i%500 == 7 {
			start = dqNow.AddDate(0, 0, 10)
		}
		end := time.Time{}
		if i%10 == 0 {
			end = dqNow.AddDate(0, 0, 1+i%3000)
		}
		updated := dqNow.AddDate(0, 0, -(i % 300))
		id := fmt.Sprintf("la001-%06d", i)
		key := strconv.Itoa(i)
		add(planRec("LA001", id, nhs, types[i%4], key, start, end, updated, 1))
		switch i % 100 {
		case 1:
			add(planRec("LA001", id+"-dup", nhs, types[i%4], "dup-"+key, start, end, updated, 1))
		case 2:
			w := planRec("LA001", id+"-err", nhsFor(3*(i+children)), types[i%4], key, start, end, dqNow.AddDate(0, 0, -20), 1)
			w.Keys = nil
			tomb := store.Record{Type: "EpisodeOfCare", ID: w.ID, Version: 2, Updated: dqNow.AddDate(0, 0, -10), Deleted: true,
				Owner: "LA001", Subject: w.Subject, End: dqNow.AddDate(0, 0, -10), Derived: &store.Derived{Type: "Flag"}}
			add(w, tomb)
		}
	}
	for i := 0; i < children/15; i++ {
		add(planRec("LA002", fmt.Sprintf("la002-%06d", i), nhsFor(3*i*15), "CPP", strconv.Itoa(i), dqNow.AddDate(0, 0, -400), time.Time{}, dqNow.AddDate(-1, 0, 0), 1))
	}
	return items
}

func planRec(ods, id, nhs, typ, key string, start, end, updated time.Time, v int64) store.Record {
	period := fmt.Sprintf(`{"start":%q}`, start.Format("2006-01-02"))
	if !end.IsZero() {
		period = fmt.Sprintf(`{"start":%q,"end":%q}`, start.Format("2006-01-02"), end.Format("2006-01-02"))
	}
	at := updated.Format("2006-01-02T15:04:05.000Z")
	body := fmt.Sprintf(`{"resourceType":"EpisodeOfCare","id":%q,"meta":{"versionId":"%d","lastUpdated":%q,"profile":["https://fhir.cpis.dev/StructureDefinition/CPIS-EpisodeOfCare"]},`+
		`"identifier":[{"system":"https://%s.example/plan-id","value":%q}],"status":"active",`+
		`"type":[{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/plan-type","code":%q}]}],`+
		`"patient":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":%q}},`+
		`"managingOrganization":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":%q},"display":"Local Authority %s"},`+
		`"period":%s}`, id, v, at, ods, key, typ, nhs, ods, ods, period)
	flag := fmt.Sprintf(`{"resourceType":"Flag","id":%q,"meta":{"versionId":"%d","lastUpdated":%q,"profile":["https://fhir.cpis.dev/StructureDefinition/CPIS-Flag"]},`+
		`"status":"active","category":[{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/plan-type","code":%q}]}],`+
		`"code":{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/plan-type","code":%q}]},`+
		`"subject":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":%q}},"period":%s,`+
		`"author":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":%q},"display":"Local Authority %s"}}`,
		id, v, at, typ, typ, nhs, period, ods, ods)
	return store.Record{Type: "EpisodeOfCare", ID: id, Version: v, Updated: updated, Owner: ods, Subject: nhs, End: end,
		Keys: []string{ods + "|https://" + ods + ".example/plan-id|" + key}, Body: []byte(body),
		Derived: &store.Derived{Type: "Flag", Body: []byte(flag)}}
}

func org(ods string, updated time.Time) store.Record {
	body := fmt.Sprintf(`{"resourceType":"Organization","id":"org-%s","meta":{"versionId":"1","lastUpdated":%q},`+
		`"identifier":[{"system":%q,"value":%q}],"name":"Local Authority %s","contact":[`+
		`{"purpose":{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/la-contact-purpose","code":"office-hours"}]},"telecom":[{"system":"phone","value":"0300 123 1000"}]},`+
		`{"purpose":{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/la-contact-purpose","code":"emergency-duty-team"}]},"telecom":[{"system":"phone","value":"0300 123 9999"}]}]}`,
		ods, updated.Format("2006-01-02T15:04:05.000Z"), fhir.ODSSystem, ods, ods)
	return store.Record{Type: "Organization", ID: "org-" + ods, Version: 1, Updated: updated, Owner: ods, Body: []byte(body),
		Keys: []string{ods + "|" + fhir.ODSSystem + "|" + ods}}
}

// nhsFor is a valid NHS number for i.
func nhsFor(i int) string {
	for k := i; ; k++ {
		nine := fmt.Sprintf("9%08d", k%100000000)
		if d := fhir.NHSNumberCheckDigit(nine); d >= 0 && d <= 9 {
			return nine + strconv.Itoa(d)
		}
	}
}

// peakHeap samples the heap in use every few milliseconds until stop is
// closed, then sends the most it saw over what was in use at the start.
func peakHeap(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	go func() {
		var peak uint64
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > base && ms.HeapInuse-base > peak {
				peak = ms.HeapInuse - base
			}
			select {
			case <-stop:
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return out
}

// cpuTime is the process's CPU time so far, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
