package quality

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the gauge cpis_data_quality_findings{rule,la}: the number
// of findings per rule per local authority at the last refresh. Register
// it with a prometheus.Registry; it is safe for concurrent use. Labels are
// rule codes and ODS codes only.
type Metrics struct {
	mu    sync.Mutex
	gauge *prometheus.GaugeVec
}

// NewMetrics builds the gauge.
func NewMetrics() *Metrics {
	return &Metrics{gauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "cpis_data_quality_findings",
		Help: "Data-quality findings per rule (https://fhir.cpis.dev/CodeSystem/data-quality-rule) per local authority (ODS code), at the last refresh.",
	}, []string{"rule", "la"})}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) { m.gauge.Describe(ch) }

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gauge.Collect(ch)
}

// Set records one LA's report: every rule gets its count, zero included,
// so a problem that was fixed shows as 0 rather than its last count. The
// whole LA changes at once: a scrape never sees half a refresh.
func (m *Metrics) Set(la string, findings []Finding) { m.SetCounts(la, Counts(findings)) }

// SetCounts is Set from a report's counts (Result.Counts); a rule missing
// from counts is set to 0.
func (m *Metrics) SetCounts(la string, counts map[Rule]int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range Rules {
		m.gauge.WithLabelValues(string(r), la).Set(float64(counts[r]))
	}
}

// Forget drops an LA's series (an LA that no longer has data).
func (m *Metrics) Forget(la string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gauge.DeletePartialMatch(prometheus.Labels{"la": la})
}
