package fhir_test

import (
	"testing"

	"cpis/fhir"
)

func BenchmarkParseSearch(b *testing.B) {
	q := "patient:identifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C9449306753&_include=Flag:author&_count=50"
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := fhir.ParseSearch(q); err != nil {
			b.Fatal(err)
		}
	}
}

const benchPlan = `{"resourceType":"EpisodeOfCare","id":"p1","status":"active",
 "identifier":[{"system":"https://la001.example/plan-id","value":"P-1"}],
 "type":[{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/plan-type","code":"CPP"}]}],
 "patient":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9449306753"}},
 "managingOrganization":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"LA001"}},
 "period":{"start":"2026-01-10"}}`

// BenchmarkDecode is the write path's parse and base R4 validation.
func BenchmarkDecode(b *testing.B) {
	c, err := fhir.NewCodec()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if res, issues := c.Decode([]byte(benchPlan)); res == nil || len(issues) > 0 {
			b.Fatal(issues)
		}
	}
}

// BenchmarkEncode renders a decoded resource for storage.
func BenchmarkEncode(b *testing.B) {
	c, _ := fhir.NewCodec()
	res, _ := c.Decode([]byte(benchPlan))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = res.Encode()
	}
}

// BenchmarkBundle encodes a searchset of stored resources without decoding
// them.
func BenchmarkBundle(b *testing.B) {
	total := 2
	raw := []byte(benchPlan)
	bundle := &fhir.Bundle{Type: "searchset", Total: &total, Link: []fhir.Link{{Relation: "self", URL: "http://x/Flag?a=b"}},
		Entry: []fhir.Entry{{FullURL: "http://x/Flag/1", Resource: raw, Search: &fhir.EntrySearch{Mode: "match"}},
			{FullURL: "http://x/Flag/2", Resource: raw, Search: &fhir.EntrySearch{Mode: "match"}}}}
	buf := make([]byte, 0, 8192)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = bundle.AppendJSON(buf[:0])
	}
}

// BenchmarkCheckJSON is the strict key check every resource and Bundle
// entry goes through before it is decoded.
func BenchmarkCheckJSON(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if issues := fhir.CheckJSON([]byte(benchPlan), "EpisodeOfCare"); issues != nil {
			b.Fatal(issues)
		}
	}
}
