package load

import (
	"context"
	"io"
	"os"
	"strconv"
	"testing"
	"time"

	"cpis/store/sqlite"
)

// BenchmarkSeedAudit writes CPIS_BENCH_AUDIT access records (default
// 100,000) about 1,000 children into a new SQLite store through the seed's
// bulk path, and reports records a second and the database bytes each
// record costs (indexes included, after the store closes).
//
//	CPIS_BENCH_AUDIT=1000000 go test -run X -bench BenchmarkSeedAudit -benchtime 1x ./cmd/cpis/internal/load
func BenchmarkSeedAudit(b *testing.B) {
	n := 100_000
	if s := os.Getenv("CPIS_BENCH_AUDIT"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 || n > MaxAuditEvents {
			b.Fatalf("CPIS_BENCH_AUDIT=%q", s)
		}
	}
	asOf := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	d := newDemoData(1, 1000, 20, asOf, 365)
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		st, err := sqlite.Open(dir, sqlite.Options{})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		res, err := seedAudit(context.Background(), st, d, SeedOptions{Seed: 1, AsOf: asOf, AuditEvents: n, Workers: 4}, io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(res.written)/took.Seconds(), "records/s")
		b.ReportMetric(float64(DirSize(dir))/float64(n), "bytes/record")
	}
}
