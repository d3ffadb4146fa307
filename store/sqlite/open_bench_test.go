package sqlite

import (
	"database/sql"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// BenchmarkOpenSealed measures a cold start's store part: Open of a store
// its clean shutdown sealed (the seal's checksums, the migration check, the
// identity, the index counts and the plan sample), then Close (which seals
// it again). The store is the one BenchmarkAudit keeps in
// CPIS_BENCH_AUDIT_DIR (or its own of CPIS_BENCH_AUDIT records); the
// sub-benchmarks time the two parts that grow with the access records.
func BenchmarkOpenSealed(b *testing.B) {
	set := benchAuditSet(b, benchAuditN(), 1000)
	dir := set.dir
	if err := set.s.Close(); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, FileName)
	info, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%d access records, %d MB", set.n, info.Size()>>20)
	b.Run("open", func(b *testing.B) {
		for b.Loop() {
			s, err := Open(dir, Options{Log: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
	b.Run("seal-checksums", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := fileSums(path, sealChunk); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("index-counts", func(b *testing.B) {
		db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		db.SetMaxOpenConns(2 * runtime.GOMAXPROCS(0))
		for b.Loop() {
			if err := countIndexes(b.Context(), db, false, func(err error, step string) error { return err }); err != nil {
				b.Fatal(err)
			}
		}
	})
}
