package handlers_test

import (
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"cpis/handlers/notify"
)

// lagMetrics collects the delivery's lag observations.
type lagMetrics struct {
	mu  sync.Mutex
	lag []time.Duration
}

func (m *lagMetrics) Delivered(kind, outcome string) {}
func (m *lagMetrics) Queue(int)                      {}
func (m *lagMetrics) Lag(d time.Duration) {
	m.mu.Lock()
	m.lag = append(m.lag, d)
	m.mu.Unlock()
}

func (m *lagMetrics) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.lag)
}

func (m *lagMetrics) quantile(q float64) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.lag) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), m.lag...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// BenchmarkNotifyLag: 32 clients doing audited reads (a Flag search by NHS
// number of a child whose LA subscribes), with and without a subscription
// delivering every access to a local receiver. It reports the audited
// reads per second in the run's steady middle (its first and last fifth
// left out: delivery gathers accesses for a moment, so a run's last
// accesses are delivered after it, and its first before any round) and,
// with the subscription, the delivery lag (access recorded → receiver's
// 2xx) at p50 and p99. Delivery runs with the production settings (poll 1s,
// woken by each audited read).
//
//	go test ./handlers -run '^$' -bench NotifyLag -benchtime 30000x
func BenchmarkNotifyLag(b *testing.B) {
	for _, be := range backends() {
		for _, with := range []bool{false, true} {
			name := be.name + "/without-subscription"
			if with {
				name = be.name + "/with-subscription"
			}
			b.Run(name, func(b *testing.B) {
				lags := &lagMetrics{}
				n := &notifier{}
				e := newEnv(b, be, withNotify(b, n, "p1", with, time.Now, func(c *notify.Config) { c.Metrics = lags }))
				e.putPlan(planSpec{id: "plan-a", nhs: nhsA, la: la1})
				var received atomic.Int64
				if with {
					rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						received.Add(1)
						w.WriteHeader(http.StatusOK)
					}))
					b.Cleanup(rc.Close)
					id := e.createSub(la1, subJSON(rc.URL, "id-only"))
					eventually(b, "active", func() bool { return e.subStatus(la1, id) == "active" })
				}
				token := e.nurse()
				const clients = 32
				var next, done atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				cpu0 := cpuTime()
				rate := steadyRate(start, &done)
				for c := 0; c < clients; c++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for next.Add(1) <= int64(b.N) {
							req := httptest.NewRequest(http.MethodGet, "/FHIR/R4/"+flagSearch(nhsA), nil)
							req.Header.Set("Authorization", "Bearer "+token)
							w := httptest.NewRecorder()
							e.h.ServeHTTP(w, req)
							if w.Code != http.StatusOK {
								b.Errorf("read: %d", w.Code)
								return
							}
							done.Add(1)
						}
					}()
				}
				wg.Wait()
				b.ReportMetric(rate(), "reads/s")
				// The process's CPU time per read, delivery included (with a
				// subscription, until every access is delivered): on a
				// shared machine this moves far less than reads/s.
				defer func() { b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-us/read") }()
				if with {
					deadline := time.Now().Add(2 * time.Minute)
					for lags.count() < b.N && time.Now().Before(deadline) {
						time.Sleep(10 * time.Millisecond)
					}
					b.StopTimer()
					b.ReportMetric(float64(lags.count()), "delivered")
					b.ReportMetric(float64(received.Load()), "posts")
					b.ReportMetric(lags.quantile(0.50).Seconds()*1000, "lag-p50-ms")
					b.ReportMetric(lags.quantile(0.99).Seconds()*1000, "lag-p99-ms")
				}
			})
		}
	}
}

// steadyRate samples how many reads are done as a run goes, and returns
// what gives the rate over the run's middle three fifths, once it is over.
func steadyRate(start time.Time, done *atomic.Int64) func() float64 {
	type sample struct {
		at time.Duration
		n  int64
	}
	var mu sync.Mutex
	samples := []sample{{0, 0}}
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				mu.Lock()
				samples = append(samples, sample{time.Since(start), done.Load()})
				mu.Unlock()
			}
		}
	}()
	return func() float64 {
		close(stop)
		mu.Lock()
		defer mu.Unlock()
		end := sample{time.Since(start), done.Load()}
		samples = append(samples, end)
		at := func(d time.Duration) sample { // the last sample by d
			i := sort.Search(len(samples), func(i int) bool { return samples[i].at > d })
			return samples[max(0, i-1)]
		}
		a, z := at(end.at/5), at(end.at*4/5)
		if z.at <= a.at {
			return float64(end.n) / end.at.Seconds()
		}
		return float64(z.n-a.n) / (z.at - a.at).Seconds()
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
