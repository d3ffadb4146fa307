package load

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/fhir"
	"cpis/store/sqlite"
)

func TestSeedDataIsDeterministic(t *testing.T) {
	asOf := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	a := newDemoData(7, 500, 30, asOf, 365)
	b := newDemoData(7, 500, 30, asOf, 365)
	assert.Equal(t, a, b, "the same seed gives the same data")
	small := newDemoData(7, 200, 30, asOf, 365)
	assert.Equal(t, small.plans, a.plans[:len(small.plans)], "a larger run extends a smaller one")
	other := newDemoData(8, 500, 30, asOf, 365)
	assert.NotEqual(t, a.plans, other.plans, "another seed gives other data")
	seen := map[string]bool{}
	for _, p := range a.plans {
		if strings.HasSuffix(p.ident, "-1") {
			assert.False(t, seen[p.nhs], "one current plan per child")
			seen[p.nhs] = true
		}
	}
	assert.Len(t, newDemoData(1, 10, 152, asOf, 365).las, 152)
}

// TestSeedAuditTopsUp writes access records into a real store, finds
// nothing to do on a second run, and writes only the rest when asked for
// more: the records are served by the feed and the access history as the
// server's own are.
func TestSeedAuditTopsUp(t *testing.T) {
	st, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	require.NoError(t, err)
	defer st.Close()
	ctx := context.Background()
	asOf := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	d := newDemoData(1, 50, 3, asOf, 365)
	o := SeedOptions{Seed: 1, AsOf: asOf, AuditEvents: 2500, Workers: 4}
	var out bytes.Buffer

	res, err := seedAudit(ctx, st, d, o, &out)
	require.NoError(t, err)
	assert.Equal(t, auditResult{written: 2500, existing: 0, took: res.took}, res)

	again, err := seedAudit(ctx, st, d, o, &out)
	require.NoError(t, err)
	assert.Equal(t, 0, again.written, "a re-run writes nothing")
	assert.Equal(t, 2500, again.existing)

	o.AuditEvents = 3000
	more, err := seedAudit(ctx, st, d, o, &out)
	require.NoError(t, err)
	assert.Equal(t, 500, more.written, "only the rest")
	from, to := auditWindow(asOf)
	n, err := countAudit(ctx, st, d, from, to)
	require.NoError(t, err)
	assert.Equal(t, 3000, n)

	page, _, err := st.AuditFeed(ctx, d.las[0].ods, from, "", 10)
	require.NoError(t, err)
	require.Len(t, page, 10)
	for i, a := range page {
		assert.Equal(t, []string{d.las[0].ods}, a.Owners)
		assert.True(t, fhir.ValidNHSNumber(a.Subject))
		assert.False(t, a.Recorded.Before(from))
		assert.True(t, a.Recorded.Before(to))
		if i > 0 {
			assert.False(t, a.Recorded.Before(page[i-1].Recorded), "the feed follows time")
		}
		var ev struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		}
		require.NoError(t, json.Unmarshal(a.Body, &ev))
		assert.Equal(t, "AuditEvent", ev.ResourceType)
		assert.Equal(t, a.ID, ev.ID)
	}
	hist, err := st.AuditBySubject(ctx, page[0].Subject, from, 100)
	require.NoError(t, err)
	assert.NotEmpty(t, hist)
}

func TestCeilingAnswersAFixed310ByteJSON(t *testing.T) {
	assert.Len(t, ceilingBody, 310)
	assert.True(t, json.Valid(ceilingBody))
}

func TestParseWrk(t *testing.T) {
	r, err := parseWrk("Running 1s test @ http://127.0.0.1:1/\n  2 threads and 32 connections\nCPIS-WRK 20000 2000000 1500 9000 25000 3 1\nRequests/sec: 10000\n")
	require.NoError(t, err)
	assert.Equal(t, 20000, r.requests)
	assert.InDelta(t, 10000, r.rate, 0.01)
	assert.Equal(t, 1500*time.Microsecond, r.p50)
	assert.Equal(t, 9*time.Millisecond, r.p99)
	assert.Equal(t, 4, r.errs, "non-2xx answers and socket errors")
	_, err = parseWrk("unable to connect to 127.0.0.1:1 Connection refused\n")
	assert.ErrorContains(t, err, "no result line")
	script := fmt.Sprintf(wrkScript, "/tmp/paths", "Bearer t")
	assert.NotContains(t, script, "%!", "the script's own format verbs are escaped")
	assert.Contains(t, script, `string.format("CPIS-WRK %d %d %d %d %d %d %d\n"`)
}

// processCPU reads a process's CPU time from /proc/PID/stat: this test's
// own, before and after it spends some, and nothing for a process that is
// not there.
func TestProcessCPU(t *testing.T) {
	before, ok := processCPU(os.Getpid())
	require.True(t, ok)
	// Spin until the count moves by 50 ms of CPU (on a loaded machine
	// the wall time that takes varies), within a generous limit.
	deadline := time.Now().Add(30 * time.Second)
	after := before
	for after-before < 50*time.Millisecond && time.Now().Before(deadline) {
		for i := 0; i < 1_000_000; i++ {
			spinSink += i
		}
		after, ok = processCPU(os.Getpid())
		require.True(t, ok)
	}
	assert.GreaterOrEqual(t, after-before, 50*time.Millisecond, "the CPU spent is counted")
	_, ok = processCPU(0)
	assert.False(t, ok)
	_, ok = processCPU(1 << 30)
	assert.False(t, ok)
}

var spinSink int

func TestCPUPerRequest(t *testing.T) {
	assert.Equal(t, "88.3µs", cpuPerRequest(883*time.Millisecond, 10000))
	assert.Equal(t, "270µs", cpuPerRequest(2704*time.Millisecond, 10000))
	assert.Equal(t, "284ms", cpuPerRequest(1420*time.Millisecond, 5))
}
