package quality

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"cpis/fhir"
	"cpis/profiles"
)

// benchPlans is one LA at 20,000 plans (the largest LA at national volume
// holds about 7,500 children): a mix of types, ages and update times, with
// 1% duplicates, 1% withdrawn plans with a replacement, and plans past each
// threshold, so every rule does its work.
func benchPlans(n int) []PlanFacts {
	types := []profiles.PlanType{profiles.CPP, profiles.CPP, profiles.LAC, profiles.UCPP}
	plans := make([]PlanFacts, 0, n)
	for i := 0; len(plans) < n; i++ {
		nhs := nhsFor(i)
		p := PlanFacts{ID: fmt.Sprintf("la001-%06d", i), NHSNumber: nhs, Type: types[i%len(types)], Status: "active",
			Start: now.AddDate(0, 0, -(i % 700)), Updated: now.AddDate(0, 0, -(i % 300)),
			Identifiers: []string{"https://la001.example/plan-id|" + strconv.Itoa(i)}}
		if i%10 == 0 {
			p.End = now.AddDate(0, 0, i%3000)
		}
		plans = append(plans, p)
		switch i % 100 {
		case 1: // a duplicate upload
			d := p
			d.ID += "-dup"
			d.Identifiers = []string{"https://la001.example/plan-id|dup-" + strconv.Itoa(i)}
			plans = append(plans, d)
		case 2: // recorded in error, replaced for another child
			w := p
			w.ID += "-err"
			w.NHSNumber, w.Deleted, w.Updated = nhsFor(i+n), true, now.AddDate(0, 0, -10)
			plans = append(plans, w)
		}
	}
	return plans[:n]
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

func BenchmarkReport20k(b *testing.B) {
	plans := benchPlans(20000)
	org := &OrgFacts{ID: "la001", Updated: now.AddDate(-2, 0, 0), OfficeHours: []string{"0300 123 1000"}, EmergencyDuty: []string{"0300 123 9999"}}
	th := DefaultThresholds()
	b.ReportAllocs()
	b.ResetTimer()
	var n int
	for i := 0; i < b.N; i++ {
		n = len(Report(now, th, plans, org))
	}
	b.ReportMetric(float64(n), "findings")
}

// BenchmarkParsePlanFacts is the per-record cost of the registry's pass
// over stored bodies (decode and read the facts), store I/O excluded.
func BenchmarkParsePlanFacts(b *testing.B) { benchParse(b, ParsePlanFacts) }

// BenchmarkParsePlanFactsEncodingJSON is the same body read with
// encoding/json (what ParsePlanFacts falls back to), for comparison.
func BenchmarkParsePlanFactsEncodingJSON(b *testing.B) { benchParse(b, decodePlanFacts) }

func benchParse(b *testing.B, parse func([]byte, time.Time, *time.Location) (PlanFacts, error)) {
	body := []byte(`{"resourceType":"EpisodeOfCare","id":"p1","meta":{"versionId":"3","lastUpdated":"2026-07-01T09:00:00.000Z","profile":["https://fhir.cpis.dev/StructureDefinition/CPIS-EpisodeOfCare"]},"identifier":[{"system":"https://la001.example/plan-id","value":"LAC-0002"}],"status":"active","type":[{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/plan-type","code":"LAC"}]}],"patient":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9449306761"}},"managingOrganization":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"LA001"},"display":"Local Authority 001"},"period":{"start":"2026-06-01","end":"2027-08-31"}}`)
	loc, err := time.LoadLocation("Europe/London")
	if err != nil {
		b.Fatal(err)
	}
	updated := time.Now()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := parse(body, updated, loc); err != nil {
			b.Fatal(err)
		}
	}
}

// The benchmark data exercises every plan rule, so the timing is of a
// report that does all its work.
func TestBenchPlansTriggerEveryPlanRule(t *testing.T) {
	counts := Counts(Report(now, DefaultThresholds(), benchPlans(20000), nil))
	for _, r := range []Rule{UCPPOverdue, CPPReviewOverdue, LACReviewOverdue, DuplicatePlan, EndFarFuture, NHSNumberCorrected} {
		if counts[r] == 0 {
			t.Errorf("no %s finding in the benchmark data", r)
		}
	}
}
