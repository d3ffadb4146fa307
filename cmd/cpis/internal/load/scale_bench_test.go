package load

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"cpis/auth"
	"cpis/fhir"
	"cpis/handlers"
	"cpis/store/sqlite"
)

// The scale benchmarks seed CPIS_BENCH_CHILDREN children (default 1,000)
// through the in-process bulk path into SQLite and then measure the real
// engine. CPIS_BENCH_DIR keeps the seeded directory between runs (the
// national 150,000 takes a while to load): a directory that holds a seed
// of that size already is used as it is.
//
//	CPIS_BENCH_CHILDREN=150000 CPIS_BENCH_DIR=/tmp/cpis-150k \
//	  go test -run X -bench BenchmarkScaleTransaction -benchtime 5x ./cmd/cpis/internal/load

const benchBase = "http://localhost:8080/FHIR/R4"

// scaleServer is the server as cpis serve builds it (real engine, SQLite,
// the data directory's local key), seeded with children children.
type scaleServer struct {
	h   http.Handler
	key *auth.LocalKey
	dir string
}

func benchChildren(b *testing.B) int {
	n := 1000
	if s := os.Getenv("CPIS_BENCH_CHILDREN"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 || n > MaxChildren {
			b.Fatalf("CPIS_BENCH_CHILDREN=%q", s)
		}
	}
	return n
}

func openScale(b *testing.B, dir string) (*scaleServer, Target, func()) {
	b.Helper()
	key, _, err := auth.LoadOrCreateLocalKey(dir)
	if err != nil {
		b.Fatal(err)
	}
	codec, err := fhir.NewCodec()
	if err != nil {
		b.Fatal(err)
	}
	london, err := time.LoadLocation("Europe/London")
	if err != nil {
		b.Fatal(err)
	}
	st, err := sqlite.Open(dir, sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.Config{Keys: key.Keys(), Issuer: auth.LocalIssuer, Audience: auth.LocalAudience, RBAC: auth.DefaultRBAC()})
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	h, err := handlers.New(handlers.Deps{
		Store: st, Codec: codec, Verifier: v, Log: log, SecurityLog: log,
		SubjectKey: []byte("bench-key-16-bytes-long"), BaseURL: benchBase, Location: london, RetentionDays: 365, LocalMode: true, Version: "bench",
	})
	if err != nil {
		b.Fatal(err)
	}
	t := Target{Handler: h, BaseURL: benchBase, Store: st, Key: key, Issuer: auth.LocalIssuer, Audience: auth.LocalAudience}
	return &scaleServer{h: h, key: key, dir: dir}, t, func() { st.Close() }
}

// seededServer opens a server seeded with benchChildren children.
func seededServer(b *testing.B) (*scaleServer, *demoData) {
	b.Helper()
	n := benchChildren(b)
	dir := os.Getenv("CPIS_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	asOf := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	marker := filepath.Join(dir, "bench-seeded-"+strconv.Itoa(n))
	s, t, closeFn := openScale(b, dir)
	b.Cleanup(closeFn)
	if _, err := os.Stat(marker); err != nil {
		start := time.Now()
		if err := Seed(context.Background(), t, SeedOptions{Children: n, LACount: 20, Seed: 1, AsOf: asOf, RetentionDays: 365, Batch: 1000, Workers: 4}, io.Discard); err != nil {
			b.Fatal(err)
		}
		b.Logf("seeded %d children in %s", n, time.Since(start).Round(time.Millisecond))
		if err := os.WriteFile(marker, nil, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	return s, newDemoData(1, n, 20, asOf, 365)
}

// BenchmarkScaleTransaction posts 1,000-entry transaction Bundles of new
// plans (conditional updates by the plan's identifier, as the bench's
// transaction scenario and every LA upload do) to the real engine over a
// store seeded with CPIS_BENCH_CHILDREN children. ns/op is one transaction.
func BenchmarkScaleTransaction(b *testing.B) {
	s, d := seededServer(b)
	la := d.las[0]
	tok, err := s.key.MintSystem(auth.SystemToken{ClientID: "bench", OrgCode: la.ods, OrgName: la.name,
		Scopes: []string{"system/EpisodeOfCare.write", "system/Organization.write"}}, auth.LocalIssuer, auth.LocalAudience, time.Now(), time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	fresh := nhsNumbers(997000000 + int(time.Now().UnixNano()%1000)*1000)
	run := time.Now().UnixNano()
	bodies := make([][]byte, b.N)
	for i := range bodies {
		bodies[i] = txBundle(la, 1000, fmt.Sprintf("BENCH-%d-%d", run, i), fresh)
	}
	b.ResetTimer()
	cpu := cpuTime()
	for i := 0; i < b.N; i++ {
		w := &response{header: http.Header{}}
		req, _ := http.NewRequest(http.MethodPost, benchBase, bytesReader(bodies[i]))
		req.Header.Set("Content-Type", fhir.MIME)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Prefer", "return=minimal")
		s.h.ServeHTTP(w, req)
		if w.status != http.StatusOK {
			b.Fatalf("%d %s", w.status, firstDiagnostics(w.body.Bytes()))
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}

// cpuTime is the CPU time the process has used (user and system): on a
// shared machine, a steadier measure of work than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkScaleSeed seeds CPIS_BENCH_CHILDREN children into a new
// directory through the in-process bulk path (cpis seed's). ns/op is one
// whole seed.
func BenchmarkScaleSeed(b *testing.B) {
	n := benchChildren(b)
	asOf := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var cpu time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		_, t, closeFn := openScale(b, dir)
		b.StartTimer()
		c0 := cpuTime()
		if err := Seed(context.Background(), t, SeedOptions{Children: n, LACount: 20, Seed: 1, AsOf: asOf, RetentionDays: 365, Batch: 1000, Workers: 4}, io.Discard); err != nil {
			b.Fatal(err)
		}
		cpu += cpuTime() - c0
		b.StopTimer()
		closeFn()
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "children/s")
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
