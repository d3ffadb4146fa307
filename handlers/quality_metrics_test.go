package handlers_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/handlers"
)

// dqGauge reads one cpis_data_quality_findings series from /metrics;
// "absent" if it is not there.
func dqGauge(t *testing.T, e *env, la, rule string) string {
	t.Helper()
	r := e.do(http.MethodGet, "/metrics", "", "")
	require.Equal(t, http.StatusOK, r.Code)
	m := regexp.MustCompile(`(?m)^cpis_data_quality_findings\{la="` + la + `",rule="` + rule + `"\} (\S+)$`).FindStringSubmatch(r.Body.String())
	if m == nil {
		return "absent"
	}
	return m[1]
}

func metricLine(t *testing.T, e *env, name string) string {
	t.Helper()
	r := e.do(http.MethodGet, "/metrics", "", "")
	require.Equal(t, http.StatusOK, r.Code)
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindStringSubmatch(r.Body.String())
	require.NotNil(t, m, "%s not in /metrics", name)
	return m[1]
}

// TestDataQualityGaugesRefresh: the scheduled sweep sets each LA's findings
// per rule as gauges (every rule, zero included), each LA counted from its
// own data only; a fixed problem goes to 0 at the next refresh; a store
// error keeps the last values and counts an error.
func TestDataQualityGaugesRefresh(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		m := handlers.NewPrometheus("test")
		e := newEnv(t, b, func(d *handlers.Deps) { d.Metrics, d.MetricsHandler = m, m.Handler() })
		e.putOrg("org-la1", la1, "Local Authority One")
		e.putOrg("org-la2", la2, "Local Authority Two")
		e.putPlan(planSpec{id: "u-old", nhs: nhsB, la: la1, planType: "UCPP", start: "2025-06-01"})
		e.putPlan(planSpec{id: "dup-a", nhs: nhsA, la: la1, start: "2026-03-01"})
		e.putPlan(planSpec{id: "dup-b", nhs: nhsA, la: la1, start: "2026-04-01"})
		// LA2's plan for the same child is no duplicate of LA1's, nor LA1's
		// old UCPP LA2's.
		e.putPlan(planSpec{id: "la2-a", nhs: nhsA, la: la2, start: "2026-03-01"})

		qs, err := handlers.NewQualitySweep(e.deps, m)
		require.NoError(t, err)
		assert.Equal(t, "absent", dqGauge(t, e, la1, "ucpp-overdue"), "nothing before the first refresh")
		require.NoError(t, qs.Refresh(context.Background()))
		assert.Equal(t, "1", dqGauge(t, e, la1, "ucpp-overdue"))
		assert.Equal(t, "1", dqGauge(t, e, la1, "duplicate-plan"))
		assert.Equal(t, "0", dqGauge(t, e, la1, "start-in-future"), "every rule has a series")
		assert.Equal(t, "0", dqGauge(t, e, la2, "ucpp-overdue"))
		assert.Equal(t, "0", dqGauge(t, e, la2, "duplicate-plan"), "another LA's plans never counted")
		assert.NotEqual(t, "0", metricLine(t, e, "cpis_data_quality_last_refresh_timestamp_seconds"))
		body := e.do(http.MethodGet, "/metrics", "", "").Body.String()
		for _, s := range []string{nhsA, nhsB, "dup-a", "u-old"} {
			assert.NotContains(t, body, s, "metrics carry rule and ODS code only")
		}

		// The LA deletes the duplicate: 0 at the next refresh, under the
		// registry's clock a second later.
		require.Equal(t, http.StatusOK, e.do(http.MethodDelete, "EpisodeOfCare/dup-b", e.laToken(la1), "").Code)
		e.clock.Add(time.Second)
		require.NoError(t, qs.Refresh(context.Background()))
		assert.Equal(t, "0", dqGauge(t, e, la1, "duplicate-plan"))
		assert.Equal(t, "1", dqGauge(t, e, la1, "ucpp-overdue"))
		assert.Equal(t, "0", metricLine(t, e, "cpis_data_quality_refresh_errors_total"))

		// The store fails: the last values stay, an error is counted.
		require.NoError(t, e.store.Close())
		require.Error(t, qs.Refresh(context.Background()))
		assert.Equal(t, "1", dqGauge(t, e, la1, "ucpp-overdue"))
		assert.Equal(t, "1", metricLine(t, e, "cpis_data_quality_refresh_errors_total"))
		assert.False(t, strings.Contains(e.logs.String(), nhsA))
	})
}

// TestDataQualitySweepRunsOnItsSchedule: Run refreshes without a request.
func TestDataQualitySweepRunsOnItsSchedule(t *testing.T) {
	m := handlers.NewPrometheus("test")
	e := newEnv(t, backends()[0], func(d *handlers.Deps) { d.Metrics, d.MetricsHandler = m, m.Handler() })
	e.putOrg("org-la1", la1, "Local Authority One")
	e.putPlan(planSpec{id: "s1", nhs: nhsA, la: la1, start: "2026-07-01"})
	qs, err := handlers.NewQualitySweep(e.deps, m)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { qs.Run(ctx, time.Hour); close(done) }()
	defer func() { cancel(); <-done }()
	require.Eventually(t, func() bool { return dqGauge(t, e, la1, "start-in-future") == "1" }, 20*time.Second, 100*time.Millisecond)
}
