package quality

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/profiles"
)

// scrape serves reg as Prometheus does and returns the gauge's lines.
func scrape(t *testing.T, reg *prometheus.Registry) []string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, err := io.ReadAll(rec.Body)
	require.NoError(t, err)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "cpis_data_quality_findings{") {
			out = append(out, l)
		}
	}
	return out
}

// Each LA gets a series per rule, zeros included; a refresh replaces the
// LA's counts (a fixed problem reads 0) and leaves other LAs alone.
func TestMetrics_PerRulePerLA(t *testing.T) {
	m := NewMetrics()
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(m))

	dup := Report(now, DefaultThresholds(), []PlanFacts{plan("c1", profiles.CPP, nhsA, nil), plan("c2", profiles.CPP, nhsA, nil)}, nil)
	m.Set("LA001", dup)
	m.Set("LA002", nil)
	want := func(la001dup string) []string {
		var out []string
		for _, la := range []string{"LA001", "LA002"} {
			for _, r := range Rules {
				n := "0"
				if la == "LA001" && r == DuplicatePlan {
					n = la001dup
				}
				out = append(out, `cpis_data_quality_findings{la="`+la+`",rule="`+string(r)+`"} `+n)
			}
		}
		return out
	}
	assert.ElementsMatch(t, want("1"), scrape(t, reg))
	m.Set("LA001", nil)
	assert.ElementsMatch(t, want("0"), scrape(t, reg))

	m.Forget("LA002")
	assert.ElementsMatch(t, want("0")[:len(Rules)], scrape(t, reg))
}
