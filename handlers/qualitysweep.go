package handlers

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"cpis/handlers/registry"
	"cpis/profiles/quality"
)

// QualitySweep keeps the data-quality gauges of a server's Prometheus
// metrics up to date: cpis_data_quality_findings{rule,la}, the number of
// findings per rule for each local authority with an Organization, as its
// own $data-quality report would count them. It runs on a schedule (Run),
// never on a request's path. A report the store cannot produce keeps that
// authority's last values and counts an error
// (cpis_data_quality_refresh_errors_total).
type QualitySweep struct {
	reg   *registry.Registry
	th    quality.Thresholds
	m     *Prometheus
	log   *slog.Logger
	known map[string]bool // the authorities that have series
}

// NewQualitySweep builds the sweep over the store of d (the server's
// dependencies: the same store, clock, thresholds and logs), reporting to m.
func NewQualitySweep(d Deps, m *Prometheus) (*QualitySweep, error) {
	if d.Store == nil || d.Location == nil || d.Log == nil || m == nil {
		return nil, errors.New("handlers: the data-quality sweep needs a store, a location, a log and the metrics")
	}
	if d.SecurityLog == nil {
		d.SecurityLog = d.Log
	}
	if d.Quality == (quality.Thresholds{}) {
		d.Quality = quality.DefaultThresholds()
	}
	reg, err := registry.New(registry.Config{Store: d.Store, Location: d.Location, RetentionDays: d.RetentionDays,
		Now: d.Now, NewID: d.NewID, Log: d.Log, SecurityLog: d.SecurityLog, SubjectKey: d.SubjectKey, Quality: d.Quality})
	if err != nil {
		return nil, err
	}
	return &QualitySweep{reg: reg, th: d.Quality, m: m, log: d.Log, known: map[string]bool{}}, nil
}

// Refresh computes every authority's report and sets its gauges. An
// authority whose report fails keeps its last values; one that no longer
// has an Organization loses its series. It returns the first error.
func (q *QualitySweep) Refresh(ctx context.Context) error {
	las, err := q.reg.LocalAuthorities(ctx)
	if err != nil && errors.Is(ctx.Err(), context.Canceled) {
		return err
	}
	if err != nil {
		q.m.qualityErrors.Inc()
		q.log.Error("data-quality refresh: listing the local authorities failed; the gauges keep their last values",
			slog.String("error", err.Error()))
		return err
	}
	var first error
	seen := make(map[string]bool, len(las))
	for _, la := range las {
		seen[la] = true
		// Counts only: the gauges list no finding, so none is kept.
		res, err := q.reg.DataQuality(ctx, registry.SweepCaller(la), q.th, quality.Listing{})
		if err != nil && errors.Is(ctx.Err(), context.Canceled) {
			return err // shutting down: not a failure of the store
		}
		if err != nil {
			q.m.qualityErrors.Inc()
			q.log.Error("data-quality refresh failed for a local authority; its gauges keep their last values",
				slog.String("la", la), slog.String("error", err.Error()))
			if first == nil {
				first = err
			}
			if ctx.Err() != nil {
				return first
			}
			continue
		}
		q.m.quality.SetCounts(la, res.Counts)
	}
	for la := range q.known {
		if !seen[la] {
			q.m.quality.Forget(la)
		}
	}
	q.known = seen
	if first == nil {
		q.m.qualityRefreshed.Set(float64(q.reg.Now().Unix()))
	}
	return first
}

// firstQualitySweep is how soon after start-up the first refresh runs.
const firstQualitySweep = 2 * time.Second

// Run refreshes the gauges soon after it starts and then every interval,
// until ctx is done. Each refresh may take at most the interval.
func (q *QualitySweep) Run(ctx context.Context, every time.Duration) {
	t := time.NewTimer(firstQualitySweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		rctx, cancel := context.WithTimeout(ctx, every)
		if err := q.Refresh(rctx); err == nil {
			q.log.Info("data-quality refresh", slog.Duration("took", time.Since(start)), slog.Int("local_authorities", len(q.known)))
		}
		cancel()
		t.Reset(every)
	}
}
