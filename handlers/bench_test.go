package handlers_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"cpis/fhir"
)

// benchEnv loads n children with one plan each and returns the env and
// their NHS numbers.
func benchEnv(b *testing.B, n int) (*env, []string) {
	b.Helper()
	e := newEnv(b, backends()[0])
	e.putOrg("org1", la1, "Local Authority One")
	nhs := make([]string, 0, n)
	for i := 0; len(nhs) < n; i++ {
		nine := fmt.Sprintf("999%06d", i)
		d := fhir.NHSNumberCheckDigit(nine)
		if d < 0 {
			continue
		}
		num := fmt.Sprintf("%s%d", nine, d)
		nhs = append(nhs, num)
		e.putPlan(planSpec{id: fmt.Sprintf("p%d", len(nhs)-1), nhs: num, la: la1})
	}
	return e, nhs
}

// drive sends GETs of path(i) in parallel with a token, 16 goroutines per
// CPU: concurrent clients, as a busy server sees them, so durable audit
// writes can share commits.
func drive(b *testing.B, e *env, tok string, path func(i int) string) {
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			req := httptest.NewRequest(http.MethodGet, "/FHIR/R4/"+path(i), nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			w := httptest.NewRecorder()
			e.h.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Fatalf("status %d: %s", w.Code, w.Body.String())
			}
			i++
		}
	})
}

// BenchmarkAuditedSearch is the hot path: token check, Flag lookup by NHS
// number, a durable AuditEvent write, a small JSON answer.
func BenchmarkAuditedSearch(b *testing.B) {
	e, nhs := benchEnv(b, 200)
	drive(b, e, e.nurse(), func(i int) string { return flagSearch(nhs[i%len(nhs)]) })
}

// BenchmarkSilentSearch is the same search without the audit write.
func BenchmarkSilentSearch(b *testing.B) {
	e, nhs := benchEnv(b, 200)
	drive(b, e, e.gp(), func(i int) string { return flagSearch(nhs[i%len(nhs)]) + "&silent=true" })
}

// BenchmarkReadByID reads Flags by id: always audited (a silent read must
// name the patient).
func BenchmarkReadByID(b *testing.B) {
	e, _ := benchEnv(b, 200)
	drive(b, e, e.nurse(), func(i int) string { return fmt.Sprintf("Flag/p%d", i%200) })
}
