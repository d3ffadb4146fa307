package logsink

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
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
