package handlers_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"cpis/auth"
	"cpis/fhir"
	"cpis/handlers"
	"cpis/store/sqlite"
)

// BenchmarkTransaction1000 posts transactions of 1,000 new plans (each with
// its derived Flag) through the real engine into SQLite in a temp dir:
// decoding, validation, permission checks, one store commit, the
// data-quality warnings and the response. Each transaction is about 1,000
// children not seen before, as `cpis bench`'s transaction scenario and a
// national upload are (the same 1,000 children every time would give each
// child b.N plans, and the duplicate-plan check would grow with b.N).
// ns/op is per transaction; entries/s is the rate; cpu-ms/op the CPU
// a transaction costs on all cores.
func BenchmarkTransaction1000(b *testing.B) {
	const n = 1000
	h, token := benchServer(b)
	bodies := make([]string, b.N)
	for i := range bodies {
		var entries []entry
		for j := 0; j < n; j++ {
			entries = append(entries, condPlanEntry(planSpec{nhs: testNHS(i*n + j), la: la1, ident: fmt.Sprintf("B%d-%d", i, j), planType: []string{"CPP", "LAC", "UCPP"}[j%3]}))
		}
		bodies[i] = bundleJSON("transaction", entries...)
	}
	b.SetBytes(int64(len(bodies[0])))
	b.ResetTimer()
	cpu := cpuTime()
	for i := 0; i < b.N; i++ {
		req := httptest.NewRequest(http.MethodPost, "/FHIR/R4", strings.NewReader(bodies[i]))
		req.Header.Set("Content-Type", fhir.MIME)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Prefer", "return=minimal")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("%d %s", w.Code, w.Body.String())
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "entries/s")
	// CPU per transaction (the process's, every core's): on a shared
	// machine a steadier measure of the work than ns/op.
	b.ReportMetric(float64(cpuTime()-cpu)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}

// benchServer is the server of newEnv for benchmarks: real engine, SQLite
// in a temp dir, a real signed token for LA001.
func benchServer(b *testing.B) (http.Handler, string) {
	b.Helper()
	key := signingKey(nil)
	codec, err := fhir.NewCodec()
	if err != nil {
		b.Fatal(err)
	}
	london, err := time.LoadLocation("Europe/London")
	if err != nil {
		b.Fatal(err)
	}
	st, err := sqlite.Open(b.TempDir(), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	v, err := auth.NewVerifier(auth.Config{Keys: key.Keys(), Issuer: auth.LocalIssuer, Audience: auth.LocalAudience, RBAC: auth.DefaultRBAC()})
	if err != nil {
		b.Fatal(err)
	}
	h, err := handlers.New(handlers.Deps{
		Store: st, Codec: codec, Verifier: v, Log: slog.New(slog.NewJSONHandler(io.Discard, nil)),
		SubjectKey: []byte("bench-key-16-bytes-long"), BaseURL: base, Location: london, LocalMode: true, Version: "bench",
	})
	if err != nil {
		b.Fatal(err)
	}
	token, err := key.MintSystem(auth.SystemToken{ClientID: "bench", OrgCode: la1, OrgName: "Local Authority One",
		Scopes: []string{"system/EpisodeOfCare.*", "system/Organization.*"}}, auth.LocalIssuer, auth.LocalAudience, time.Now(), time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	return h, token
}
