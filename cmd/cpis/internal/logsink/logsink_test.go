package logsink

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// output records each write(2) the sink makes.
type output struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.writes++
	return o.buf.Write(p)
}

func (o *output) lines() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := strings.TrimSuffix(o.buf.String(), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func (o *output) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.writes
}

func loggers(every time.Duration) (*Sink, *output, *slog.Logger, *slog.Logger) {
	out := &output{}
	s := New(out, every)
	log := slog.New(s.Handler(slog.NewTextHandler(s, nil), slog.LevelWarn))
	security := slog.New(Immediate(log.Handler())).With(slog.String("log", "security"))
	return s, out, log, security
}

// Request lines share writes and still arrive within the interval.
func TestRequestLinesAreBufferedAndArrive(t *testing.T) {
	_, out, log, _ := loggers(50 * time.Millisecond)
	for i := 0; i < 100; i++ {
		log.Info("request", slog.Int("n", i))
	}
	assert.Empty(t, out.lines(), "nothing written yet: lines wait in the buffer")
	require.Eventually(t, func() bool { return len(out.lines()) == 100 }, 2*time.Second, 5*time.Millisecond)
	assert.Equal(t, 1, out.count(), "a hundred lines in one write")
	assert.Contains(t, out.lines()[99], "n=99")
}

// A warning, an error and every security line are out before the call
// returns, after (and with) the lines logged before them.
func TestUrgentAndSecurityLinesAreWrittenAtOnceInOrder(t *testing.T) {
	_, out, log, security := loggers(time.Hour)
	log.Info("request", slog.Int("n", 1))
	security.Info("silent read")
	got := out.lines()
	require.Len(t, got, 2, "the security line and what came before it")
	assert.Contains(t, got[0], "n=1")
	assert.Contains(t, got[1], "silent read")
	assert.Contains(t, got[1], "log=security")

	log.Info("request", slog.Int("n", 2))
	log.Error("the store failed")
	got = out.lines()
	require.Len(t, got, 4)
	assert.Contains(t, got[2], "n=2")
	assert.Contains(t, got[3], "the store failed")

	log.Info("request", slog.Int("n", 3))
	log.With(slog.String("k", "v")).WithGroup("g").Warn("slow")
	assert.Len(t, out.lines(), 6, "a derived logger keeps the urgency")
}

// The buffer is bounded: past its size the lines are written at once, so
// a burst never holds more than a buffer (and one line) in memory.
func TestBufferIsBounded(t *testing.T) {
	s, out, log, _ := loggers(time.Hour)
	line := strings.Repeat("x", 1000)
	for i := 0; i < 200; i++ {
		log.Info(line)
		s.mu.Lock()
		held := len(s.buf)
		s.mu.Unlock()
		require.Less(t, held, DefaultSize, "after line %d", i)
	}
	assert.GreaterOrEqual(t, len(out.lines()), 200-DefaultSize/1000)
	assert.Greater(t, out.count(), 1)
}

// Close writes out what is left, and later lines go straight through.
func TestCloseFlushes(t *testing.T) {
	s, out, log, _ := loggers(time.Hour)
	log.Info("last request")
	require.NoError(t, s.Close())
	assert.Len(t, out.lines(), 1)
	log.Info("after close")
	assert.Len(t, out.lines(), 2)
}

// Many goroutines logging at once lose no line and mix none.
func TestConcurrentLinesStayWhole(t *testing.T) {
	s, out, log, security := loggers(time.Millisecond)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				if i%50 == 0 {
					security.Info("silent read")
				} else {
					log.Info("request", slog.Int("i", i))
				}
			}
		}()
	}
	wg.Wait()
	require.NoError(t, s.Close())
	got := out.lines()
	require.Len(t, got, 8*500)
	for _, l := range got {
		assert.True(t, strings.HasPrefix(l, "time="), "a whole line: %q", l)
	}
}

// slowOutput is an output whose every write(2) takes a while, as a pipe to
// a busy log collector does.
type slowOutput struct {
	output
	each time.Duration
}

func (o *slowOutput) Write(p []byte) (int, error) {
	time.Sleep(o.each)
	return o.output.Write(p)
}

func (o *slowOutput) has(line string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return strings.Contains(o.buf.String(), line+"\n")
}

// Security lines logged at once share writes: a line that comes while
// another is being written goes out with the next write, and each call
// still returns only once its own line is written.
func TestSecurityLinesShareWrites(t *testing.T) {
	out := &slowOutput{each: 2 * time.Millisecond}
	s := New(out, time.Hour)
	security := slog.New(Immediate(s.Handler(slog.NewTextHandler(s, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}), slog.LevelWarn)))
	const goroutines, each = 8, 25
	var wg sync.WaitGroup
	var missing sync.Map
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				security.Info("silent read", slog.Int("g", g), slog.Int("i", i))
				line := fmt.Sprintf(`level=INFO msg="silent read" g=%d i=%d`, g, i)
				if !out.has(line) {
					missing.Store(line, true)
				}
			}
		}()
	}
	wg.Wait()
	missing.Range(func(k, _ any) bool {
		t.Errorf("returned before its line was written: %s", k)
		return true
	})
	assert.Len(t, out.lines(), goroutines*each)
	assert.Less(t, out.count(), goroutines*each/2, "lines logged together share writes (%d writes)", out.count())
}

// A write that fails is reported to the callers whose lines it held.
func TestFailedWriteIsReported(t *testing.T) {
	s := New(failing{}, time.Hour)
	_, err := s.Write([]byte("a\n"))
	require.NoError(t, err, "buffered")
	assert.Error(t, s.Flush())
	assert.Error(t, s.Flush(), "the line was in the failed write")
	s.w = &output{}
	_, err = s.Write([]byte("b\n"))
	require.NoError(t, err)
	assert.NoError(t, s.Flush(), "the next write went out")
}

type failing struct{}

func (failing) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// BenchmarkSecurityLines logs a security line (written out before the call
// returns) from many goroutines at once to a file, as silent reads do.
func BenchmarkSecurityLines(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "log"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	counted := &countingWriter{w: f}
	s := New(counted, 100*time.Millisecond)
	security := slog.New(Immediate(s.Handler(slog.NewJSONHandler(s, nil), slog.LevelWarn))).With(slog.String("log", "security"))
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			security.Info("silent read", slog.String("route", "/FHIR/R4/Flag"), slog.String("subject_hash", "639209ffbd0437920cf99827"))
		}
	})
	b.ReportMetric(float64(counted.writes.Load())/float64(b.N), "writes/line")
}

type countingWriter struct {
	w      io.Writer
	writes atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.w.Write(p)
}

// While a write out is slow, many callers at once do not grow the buffer
// past its size by a line each: they wait for the write.
func TestBufferIsBoundedWhileAWriteIsSlow(t *testing.T) {
	out := &slowOutput{each: 20 * time.Millisecond}
	s := New(out, time.Hour)
	s.size = 1000
	line := []byte(strings.Repeat("x", 99) + "\n")
	var wg sync.WaitGroup
	var most atomic.Int64
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				_, err := s.Write(line)
				assert.NoError(t, err)
				s.mu.Lock()
				if n := int64(len(s.buf)); n > most.Load() {
					most.Store(n)
				}
				s.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.NoError(t, s.Close())
	assert.Len(t, out.lines(), 64*5, "no line lost")
	assert.Less(t, most.Load(), int64(s.size+len(line)), "the buffer holds at most its size and one line")
}
