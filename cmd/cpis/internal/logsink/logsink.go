// Package logsink buffers the server's log lines on their way to its
// output, so the line every request logs costs an append, not a write(2).
//
// What is buffered: operational lines below an urgent level (the request
// log). They reach the output within the flush interval, or at once when
// the buffer passes its size. What is not: a line at or above the urgent
// level (warnings, errors, a panic's stack) and every line of a logger made
// Immediate (the security log: a silent read's line is out before its
// answer is sent, as it was before buffering). Such a line is written
// together with everything buffered before it, so the output keeps the
// order lines were logged in. A crash loses at most the operational lines
// of the last interval.
package logsink

import (
	"context"
	"io"
	"log/slog"
	"math"
	"sync"
	"time"
)

// DefaultSize is the buffer size past which lines are written at once.
const DefaultSize = 32 << 10

// Sink is a buffered writer of whole log lines, safe for concurrent use.
//
// Writes out combine: a caller that must see its line written (a security
// line, a warning) waits for the write under way, if any, and then writes
// everything buffered by then, its own line and those of the callers that
// came while it waited; they find their lines written and return without a
// write(2) of their own. Under load, many security lines share a write.
type Sink struct {
	mu        sync.Mutex // guards what follows, to wmu
	w         io.Writer
	buf       []byte
	size      int
	every     time.Duration
	timer     *time.Timer // armed while the buffer holds lines
	done      bool
	appended  uint64 // the lines appended so far (Write calls)
	written   uint64 // the lines handed to w so far
	lastErr   error  // the error of the last write out
	errorFrom uint64 // the lines from here to written failed with lastErr

	wmu   sync.Mutex // held while writing out: one write at a time, in order
	spare []byte     // the buffer last written, reused for the next lines
}

// New makes a sink writing to w at least every interval.
func New(w io.Writer, every time.Duration) *Sink {
	return &Sink{w: w, size: DefaultSize, every: every, buf: make([]byte, 0, DefaultSize)}
}

// Write buffers p (one or more whole lines, as slog's handlers write them).
func (s *Sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	// A full buffer is written out before more is added: while a write
	// is slow (a stalled log reader), callers wait rather than the buffer
	// growing by a line for each of them.
	for !s.done && len(s.buf) >= s.size {
		line := s.appended
		s.mu.Unlock()
		if err := s.flushThrough(line); err != nil {
			return 0, err
		}
		s.mu.Lock()
	}
	if s.done {
		s.mu.Unlock()
		return s.write(p)
	}
	s.buf = append(s.buf, p...)
	s.appended++
	line, full := s.appended, len(s.buf) >= s.size
	if !full && s.timer == nil {
		s.timer = time.AfterFunc(s.every, func() { _ = s.Flush() })
	}
	s.mu.Unlock()
	if full {
		return len(p), s.flushThrough(line)
	}
	return len(p), nil
}

// write writes p on its own (after Close), in turn with any write out.
func (s *Sink) write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.w.Write(p)
}

// Flush writes out what is buffered.
func (s *Sink) Flush() error {
	s.mu.Lock()
	line := s.appended
	s.mu.Unlock()
	return s.flushThrough(line)
}

// flushThrough returns once the first line lines are written out: by this
// call, or by a write out that took them while it waited for its turn.
func (s *Sink) flushThrough(line uint64) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if s.written >= line {
		err := s.lastErr
		if line <= s.errorFrom {
			err = nil // written by a write out that did not fail
		}
		s.mu.Unlock()
		return err
	}
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	out, from := s.buf, s.written
	s.buf, s.spare = s.spare[:0], nil
	if s.buf == nil {
		s.buf = make([]byte, 0, s.size)
	}
	s.written = s.appended
	s.mu.Unlock()

	_, err := s.w.Write(out)

	s.mu.Lock()
	s.lastErr, s.errorFrom = err, from
	if err == nil {
		s.errorFrom = s.written
	}
	if cap(out) <= 4*s.size {
		s.spare = out[:0] // one huge line does not keep its buffer
	}
	s.mu.Unlock()
	return err
}

// Close writes out what is buffered; later lines are written unbuffered.
func (s *Sink) Close() error {
	s.mu.Lock()
	s.done = true
	line := s.appended
	s.mu.Unlock()
	return s.flushThrough(line)
}

// Handler wraps h, which writes to s: a record at or above urgent is
// written out, with everything buffered before it, before Handle returns.
func (s *Sink) Handler(h slog.Handler, urgent slog.Level) slog.Handler {
	return &handler{inner: h, sink: s, urgent: urgent}
}

// Immediate returns h writing every record out at once if h is a sink's
// handler (see Handler), else h unchanged (it writes unbuffered already).
func Immediate(h slog.Handler) slog.Handler {
	if x, ok := h.(*handler); ok {
		return &handler{inner: x.inner, sink: x.sink, urgent: math.MinInt}
	}
	return h
}

type handler struct {
	inner  slog.Handler
	sink   *Sink
	urgent slog.Level
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	err := h.inner.Handle(ctx, r)
	if r.Level >= h.urgent {
		if ferr := h.sink.Flush(); err == nil {
			err = ferr
		}
	}
	return err
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &handler{inner: h.inner.WithAttrs(as), sink: h.sink, urgent: h.urgent}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{inner: h.inner.WithGroup(name), sink: h.sink, urgent: h.urgent}
}
