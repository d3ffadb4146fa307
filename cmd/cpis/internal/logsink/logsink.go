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
type Sink struct {
	mu    sync.Mutex
	w     io.Writer
	buf   []byte
	size  int
	every time.Duration
	timer *time.Timer // armed while the buffer holds lines
	done  bool
}

// New makes a sink writing to w at least every interval.
func New(w io.Writer, every time.Duration) *Sink {
	return &Sink{w: w, size: DefaultSize, every: every, buf: make([]byte, 0, DefaultSize)}
}

// Write buffers p (one or more whole lines, as slog's handlers write them).
func (s *Sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return s.w.Write(p)
	}
	s.buf = append(s.buf, p...)
	if len(s.buf) >= s.size {
		return len(p), s.flushLocked()
	}
	if s.timer == nil {
		s.timer = time.AfterFunc(s.every, func() { _ = s.Flush() })
	}
	return len(p), nil
}

// Flush writes out what is buffered.
func (s *Sink) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flushLocked()
}

func (s *Sink) flushLocked() error {
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if len(s.buf) == 0 {
		return nil
	}
	_, err := s.w.Write(s.buf)
	if cap(s.buf) > 4*s.size {
		s.buf = make([]byte, 0, s.size) // one huge line does not keep its buffer
	} else {
		s.buf = s.buf[:0]
	}
	return err
}

// Close writes out what is buffered; later lines are written unbuffered.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = true
	return s.flushLocked()
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
