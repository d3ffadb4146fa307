package sqlite

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cpis/store"
)

// BenchmarkAuditGroupCommit32: 32 clients each recording accesses (a real
// AuditEvent body) one after another, as 32 connections of audited reads
// do: how many share a commit (one fsync), commits a second, and the CPU
// each access costs the process.
func BenchmarkAuditGroupCommit32(b *testing.B) {
	var commits, ops atomic.Int64
	s, err := Open(b.TempDir(), Options{CheckTimeout: -1, BatchObserver: func(n int) { commits.Add(1); ops.Add(int64(n)) }})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	body := auditEventBody(b)
	subjects := nhsNumbers(1000)
	ctx := context.Background()
	var next atomic.Int64
	commits.Store(0)
	ops.Store(0)
	c0, start := cpuNanos(), time.Now()
	b.ResetTimer()
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				err := s.Audit(ctx, []store.AuditRecord{{ID: fmt.Sprint("a", i), Recorded: time.Now(), Subject: subjects[i%1000],
					Agent: "user:1", Notify: true, Owners: []string{"LA001"}, Body: body}})
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	took := time.Since(start)
	b.ReportMetric(float64(ops.Load())/float64(commits.Load()), "accesses/commit")
	b.ReportMetric(float64(commits.Load())/took.Seconds(), "commits/s")
	b.ReportMetric(float64(cpuNanos()-c0)/float64(b.N), "cpu-ns/access")
}
