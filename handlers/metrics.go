package handlers

import (
	"context"
	"cpis/handlers/registry"
	"cpis/profiles/quality"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Prometheus holds the server's metrics. Labels are route templates,
// methods, statuses and store operation names: never a raw path or an
// identifier.
type Prometheus struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	store    *prometheus.HistogramVec
	errors   *prometheus.CounterVec
	batch    prometheus.Histogram
	// Security-log lines not written: each a silent read refused.
	securityLogErrors prometheus.Counter
	// The data-quality sweep's gauges (see QualitySweep).
	quality          *quality.Metrics
	qualityErrors    prometheus.Counter
	qualityRefreshed prometheus.Gauge
}

// NewPrometheus registers the collectors.
func NewPrometheus(version string) *Prometheus {
	reg := prometheus.NewRegistry()
	m := &Prometheus{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cpis_http_requests_total", Help: "HTTP requests by route template, method and status.",
		}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "cpis_http_request_duration_seconds", Help: "HTTP request latency by route template and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route", "method"}),
		store: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "cpis_store_operation_duration_seconds", Help: "Store call latency by operation (audit is the durable AuditEvent write).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"op"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cpis_store_errors_total", Help: "Store calls that failed, by operation.",
		}, []string{"op"}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cpis_store_group_commit_operations", Help: "Write operations sharing one durable commit.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}),
	}
	m.securityLogErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "cpis_security_log_errors_total",
		Help: "Security-log lines that could not be written; each is a silent read answered 503 with no data.",
	})
	m.quality = quality.NewMetrics()
	m.qualityErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "cpis_data_quality_refresh_errors_total",
		Help: "Data-quality refreshes of a local authority (or of the list of authorities) that failed; the gauges keep their last values.",
	})
	m.qualityRefreshed = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "cpis_data_quality_last_refresh_timestamp_seconds",
		Help: "When the data-quality gauges were last refreshed for every local authority without an error (Unix seconds); 0 before the first.",
	})
	info := prometheus.NewGauge(prometheus.GaugeOpts{Name: "cpis_build_info", Help: "The running version.", ConstLabels: prometheus.Labels{"version": version}})
	info.Set(1)
	reg.MustRegister(m.requests, m.latency, m.store, m.errors, m.batch, m.securityLogErrors, info, m.quality, m.qualityErrors, m.qualityRefreshed,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// SecurityLog wraps the security log's handler: a line it could not write
// is counted in cpis_security_log_errors_total, so that a log output gone
// (which refuses every silent read, see registry's audited) can be alerted
// on by itself rather than found among the 503s.
func (m *Prometheus) SecurityLog(h slog.Handler) slog.Handler {
	return &countedHandler{Handler: h, failed: m.securityLogErrors}
}

// countedHandler counts the records its handler could not write.
type countedHandler struct {
	slog.Handler
	failed prometheus.Counter
}

func (h *countedHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if err != nil {
		h.failed.Inc()
	}
	return err
}

func (h *countedHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &countedHandler{Handler: h.Handler.WithAttrs(as), failed: h.failed}
}

func (h *countedHandler) WithGroup(name string) slog.Handler {
	return &countedHandler{Handler: h.Handler.WithGroup(name), failed: h.failed}
}

// Request implements Metrics.
func (m *Prometheus) Request(route, method string, status int, d time.Duration) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(route, method).Observe(d.Seconds())
}

// StoreCall observes one store call (see store/observed). Only failures of
// the store count as errors: not an answer such as not-found or a version
// conflict, nor a call stopped because its client went away.
func (m *Prometheus) StoreCall(op string, d time.Duration, err error) {
	m.store.WithLabelValues(op).Observe(d.Seconds())
	if registry.StoreFault(err) {
		m.errors.WithLabelValues(op).Inc()
	}
}

// GroupCommit observes how many operations shared one commit.
func (m *Prometheus) GroupCommit(ops int) { m.batch.Observe(float64(ops)) }

// Handler serves the metrics in the Prometheus text format.
func (m *Prometheus) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
