package sqlite

import (
	"bytes"
	"compress/flate"
	"io"
	"syscall"
	"testing"

	kflate "github.com/klauspost/compress/flate"
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
