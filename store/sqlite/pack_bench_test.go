package sqlite

import (
	"bytes"
	"compress/flate"
	"io"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	kflate "github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
)

// BenchmarkPackBody compresses an AuditEvent as the store does (a
// Zstandard frame against the dictionary), and as it did before (DEFLATE
// against the dictionary: klauspost/compress at level 6, and before that
// the standard library's compressor at its default level), reporting the
// CPU per body (the machine is shared: wall time per operation measures
// the queue for a core) and the bytes stored.
func BenchmarkPackBody(b *testing.B) {
	body := storedAuditEventBody(b)
	b.Run("packBody", func(b *testing.B) {
		var out []byte
		c0 := cpuNanos()
		for b.Loop() {
			out = packBody(body)
		}
		b.ReportMetric(float64(cpuNanos()-c0)/float64(b.N), "cpu-ns/op")
		b.ReportMetric(float64(len(out)), "bytes")
		if got, err := unpackBody(out); err != nil || !bytes.Equal(got, body) {
			b.Fatal("round trip", err)
		}
	})
	deflate := func(b *testing.B, w interface {
		Reset(io.Writer)
		Write([]byte) (int, error)
		Close() error
	}) {
		var buf bytes.Buffer
		c0 := cpuNanos()
		for b.Loop() {
			buf.Reset()
			buf.WriteByte(packedDict)
			w.Reset(&buf)
			w.Write(body)
			w.Close()
		}
		b.ReportMetric(float64(cpuNanos()-c0)/float64(b.N), "cpu-ns/op")
		b.ReportMetric(float64(buf.Len()), "bytes")
		if got, err := unpackBody(buf.Bytes()); err != nil || !bytes.Equal(got, body) {
			b.Fatal("round trip", err)
		}
	}
	b.Run("deflate-before", func(b *testing.B) {
		w, _ := kflate.NewWriterDict(nil, 6, dict)
		deflate(b, w)
	})
	b.Run("std-flate-before", func(b *testing.B) {
		w, _ := flate.NewWriterDict(nil, flate.DefaultCompression, dict)
		deflate(b, w)
	})
}

// cpuNanos is the CPU time this process has used.
func cpuNanos() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkPackBodyConcurrent packs from 32 goroutines at once, as 32
// connections of audited reads do, and reports the wall time of each call
// at the median and the 99th percentile: packBody's pool of encoders
// against one shared Encoder holding a state for each core (the library's
// own sharing, which makes a caller wait when every state is in use).
func BenchmarkPackBodyConcurrent(b *testing.B) {
	body := storedAuditEventBody(b)
	shared, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderDictRaw(auditDictID, dict),
		zstd.WithSingleSegment(true), zstd.WithWindowSize(1<<16))
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		pack func() []byte
	}{
		{"pool", func() []byte { return packBody(body) }},
		{"shared-encoder", func() []byte { return shared.EncodeAll(body, []byte{packedZstd}) }},
	} {
		pack := c.pack
		b.Run(c.name, func(b *testing.B) {
			var mu sync.Mutex
			var took []time.Duration
			b.SetParallelism(16) // 32 goroutines on 2 cores
			c0 := cpuNanos()
			b.RunParallel(func(pb *testing.PB) {
				var mine []time.Duration
				for pb.Next() {
					t0 := time.Now()
					pack()
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				took = append(took, mine...)
				mu.Unlock()
			})
			b.ReportMetric(float64(cpuNanos()-c0)/float64(b.N), "cpu-ns/op")
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs")
		})
	}
}
