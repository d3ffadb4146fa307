package handlers

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"cpis/handlers/notify"
)

// notifyMetrics observes notifications to local authorities.
type notifyMetrics struct {
	deliveries *prometheus.CounterVec
	lag        prometheus.Histogram
	queue      prometheus.Gauge
}

// NotifyMetrics registers the delivery's collectors on the server's
// registry: deliveries by kind and outcome, the lag from an access being
// recorded to the endpoint's 2xx, and the events waiting. Call it once.
func (m *Prometheus) NotifyMetrics() notify.Metrics {
	n := &notifyMetrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cpis_notify_deliveries_total", Help: "Notification POSTs to local authorities' endpoints by kind (handshake, heartbeat, event-notification) and outcome (ok, failed).",
		}, []string{"kind", "outcome"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cpis_notify_lag_seconds", Help: "Time from an access being recorded to the local authority's endpoint acknowledging its notification.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2, 5, 10, 30, 60, 300, 3600},
		}),
		queue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cpis_notify_queue_events", Help: "Events numbered for subscriptions this process delivers and not yet acknowledged.",
		}),
	}
	m.reg.MustRegister(n.deliveries, n.lag, n.queue)
	return n
}

func (n *notifyMetrics) Delivered(kind, outcome string) {
	n.deliveries.WithLabelValues(kind, outcome).Inc()
}
func (n *notifyMetrics) Lag(d time.Duration) { n.lag.Observe(d.Seconds()) }
func (n *notifyMetrics) Queue(events int)    { n.queue.Set(float64(events)) }
