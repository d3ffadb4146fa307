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

func benchSearch(b *testing.B, token, extra string) {
	e, nhs := benchEnv(b, 200)
	tok := token
	if tok == "" {
		tok = e.nurse()
	} else {
		tok = e.gp()
	}
	b.ReportAllocs()
	// 16 goroutines per CPU: concurrent clients, as a busy server sees them,
	// so durable audit writes can share commits.
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			req := httptest.NewRequest(http.MethodGet, "/FHIR/R4/"+flagSearch(nhs[i%len(nhs)])+extra, nil)
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
func BenchmarkAuditedSearch(b *testing.B) { benchSearch(b, "", "") }

// BenchmarkSilentSearch is the same search without the audit write.
func BenchmarkSilentSearch(b *testing.B) { benchSearch(b, "gp", "&silent=true") }

func BenchmarkReadByID(b *testing.B) {
	e, _ := benchEnv(b, 200)
	tok := e.gp()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			req := httptest.NewRequest(http.MethodGet, fmt.Sprintf("/FHIR/R4/Flag/p%d?silent=true", i%200), nil)
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
