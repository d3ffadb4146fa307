package sqlite

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
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
	body := storedAuditEventBody(b)
	subjects := nhsNumbers(1000)
	ctx := context.Background()
	var next atomic.Int64
	commits.Store(0)
	ops.Store(0)
	c0, w0, start := cpuNanos(), writtenBytes(), time.Now()
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
	b.ReportMetric(float64(writtenBytes()-w0)/float64(b.N), "written-B/access")
}

// writtenBytes is what this process has written through write(2) and its
// kin so far (wchar in /proc/self/io: the log's frames and what the
// checkpoints copy into the database), 0 where that is not to be read.
func writtenBytes() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// TestGatherWaitsForMoreWrites: the writer's gathering takes the writes
// queued meanwhile into the batch and waits out gatherFor for more, not
// stopping when the queue is empty; a full batch ends it. What is queued is
// taken even when the wait is over before the queue is drained (a loaded
// machine): with no wait at all, a full queue still fills the batch.
func TestGatherWaitsForMoreWrites(t *testing.T) {
	s := &Store{ops: make(chan *op, maxBatch)}
	for range 3 {
		s.ops <- &op{}
	}
	start := time.Now()
	batch := s.gather([]*op{{}}, gatherFor)
	if took := time.Since(start); len(batch) != 4 || took < gatherFor {
		t.Fatalf("gathered %d operations in %s, want 4 in at least %s", len(batch), took, gatherFor)
	}
	for _, wait := range []time.Duration{gatherFor, 0} {
		for range 20 {
			for range maxBatch {
				s.ops <- &op{}
			}
			if batch := s.gather(nil, wait); len(batch) != maxBatch || len(s.ops) != 0 {
				t.Fatalf("waiting %s, gathered %d of a full queue, left %d", wait, len(batch), len(s.ops))
			}
		}
	}
}
