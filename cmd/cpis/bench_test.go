package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/cmd/cpis/internal/load"
)

// TestBenchAgainstARunningServer runs the load command briefly against a
// server started through run, with the Go client (wrk is not needed),
// seeding a few children over HTTP and access records through the store:
// every scenario answers without errors, each has its share of the gin
// ceiling and of /_ping, and the sweep purges what it wrote expired.
func TestBenchAgainstARunningServer(t *testing.T) {
	dir := t.TempDir()
	vars := map[string]string{"CPIS_DATA_DIR": dir}
	s := start(t, vars)
	var out bytes.Buffer
	err := run(context.Background(), []string{"bench", "--target", "http://" + s.addr, "--data-dir", dir, "--generator", "go",
		"--children", "60", "--audit-events", "600", "--concurrency", "4", "--duration", "200ms", "--warmup", "0s", "--transactions", "1"}, env(vars), &out)
	require.NoError(t, err, out.String())
	report := out.String()
	assert.Contains(t, report, "seeded 60 children")
	assert.Contains(t, report, "access records: 600 written through the store")
	// The sweep is measured on the server bench starts (below).
	assert.Contains(t, report, "sweep: not measured")
	lines := strings.Split(report, "\n")
	var header []string
	for _, l := range lines {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "scenario" {
			header = f
		}
	}
	require.NotEmpty(t, header, report)
	col := func(name string) int {
		for i, h := range header {
			if h == name {
				return i
			}
		}
		t.Fatalf("no %s column in %v", name, header)
		return -1
	}
	share := regexp.MustCompile(`^\d+\.\d%$`)
	for _, name := range load.ScenarioNames() {
		if name == "sweep" {
			continue
		}
		var row []string
		for _, l := range lines {
			if f := strings.Fields(l); len(f) == len(header) && f[0] == name {
				row = f
			}
		}
		require.NotEmpty(t, row, "a row for %s in:\n%s", name, report)
		assert.Equal(t, "0", row[col("errors")], "%s had errors: %v", name, row)
		assert.NotEqual(t, "0", row[col("requests")], "%s ran", name)
		if name != "gin-ceiling" {
			assert.Regexp(t, share, row[col("vs-gin")], "%s as a share of the ceiling", name)
			assert.Equal(t, "n/a", row[col("CPU/req")], "%s: a server bench did not start is not its to measure", name)
		}
	}
}

// TestBenchRefusesAServerWithoutItsChildren: bench --seeded (or --target)
// takes the data directory to hold the children --children describes. Given
// more than it holds, most of the children it asks about as "hits" would
// have no plan there and every figure would measure misses, so it stops and
// says to give --children as seeded; given the seed's own, it measures.
func TestBenchRefusesAServerWithoutItsChildren(t *testing.T) {
	dir := t.TempDir()
	vars := map[string]string{"CPIS_DATA_DIR": dir}
	s := start(t, vars)
	bench := func(children string, more ...string) (string, error) {
		var out bytes.Buffer
		args := append([]string{"bench", "--target", "http://" + s.addr, "--data-dir", dir, "--generator", "go", "--scenarios", "ping",
			"--children", children, "--concurrency", "2", "--duration", "100ms", "--warmup", "0s"}, more...)
		err := run(context.Background(), args, env(vars), &out)
		return out.String(), err
	}
	out, err := bench("150")
	require.NoError(t, err, out)
	out, err = bench("150", "--seeded")
	require.NoError(t, err, out)
	out, err = bench("5000", "--seeded")
	require.Error(t, err, out)
	assert.Contains(t, err.Error(), "give --children and --la-count as the data directory was seeded")
	assert.NotContains(t, out, "ping ", "nothing is measured")
	// Another data directory's key mints tokens the server refuses: said
	// as such, not as children missing.
	out, err = bench("150", "--seeded", "--data-dir", t.TempDir())
	require.Error(t, err, out)
	assert.Contains(t, err.Error(), "were not answered 200 (status 401)")
	// Fewer children with plans than bench asks about before judging: it
	// judges on all of them. A server seeded with nothing holds none.
	empty := t.TempDir()
	vars = map[string]string{"CPIS_DATA_DIR": empty}
	s = start(t, vars)
	out, err = bench("20", "--seeded", "--data-dir", empty)
	require.Error(t, err, out)
	assert.Contains(t, err.Error(), "give --children and --la-count as the data directory was seeded")
}

// TestBenchFollowsTheServersBasePath: a server whose API is at
// /cpis/FHIR/R4 (CPIS_BASE_URL's path, as the national API has it) is
// seeded and measured there, not at a hard-coded /FHIR/R4; the path may
// also be given with --target.
func TestBenchFollowsTheServersBasePath(t *testing.T) {
	dir := t.TempDir()
	vars := map[string]string{"CPIS_DATA_DIR": dir, "CPIS_BASE_URL": "http://localhost:8080/cpis/FHIR/R4"}
	s := start(t, vars)
	for _, target := range []string{"http://" + s.addr, "http://" + s.addr + "/cpis/FHIR/R4/"} {
		var out bytes.Buffer
		err := run(context.Background(), []string{"bench", "--target", target, "--data-dir", dir, "--generator", "go", "--scenarios", "ping,silent-search",
			"--children", "5", "--concurrency", "2", "--duration", "100ms", "--warmup", "0s"}, env(vars), &out)
		require.NoError(t, err, out.String())
		rows := 0
		for _, l := range strings.Split(out.String(), "\n") {
			// The table's rows: scenario, requests, req/s, vs-gin, vs-ping,
			// p50, p99, errors (a path the server does not serve is 404s
			// counted there), not the progress lines ("… req/s …").
			if f := strings.Fields(l); len(f) > 7 && (f[0] == "ping" || f[0] == "silent-search") && f[2] != "req/s" {
				rows++
				assert.NotEqual(t, "0", f[1], "%s: requests ran: %s", target, l)
				assert.Equal(t, "0", f[7], "%s: no errors: %s", target, l)
			}
		}
		assert.Equal(t, 2, rows, "%s: both scenarios reported: %s", target, out.String())
		assert.NotContains(t, out.String(), "status 404", target)
	}
}

// TestBenchSweepRunsInTheServer: the sweep scenario loads expired plans
// and access records, restarts the server it started on them, and measures
// searches while the server's own sweeper (in its process, through its
// writer, as production runs it) purges them: the report says what that
// sweeper purged, and both the audited and the silent search ran during
// it without errors.
func TestBenchSweepRunsInTheServer(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(asMain, "1") // the server bench starts is this test binary, as cpis
	vars := map[string]string{"CPIS_DATA_DIR": dir}
	var out bytes.Buffer
	err := run(context.Background(), []string{"bench", "--generator", "go", "--scenarios", "ping,sweep",
		"--children", "60", "--audit-events", "600", "--concurrency", "4", "--duration", "300ms", "--warmup", "0s"}, env(vars), &out)
	require.NoError(t, err, out.String())
	report := out.String()
	m := regexp.MustCompile(`the server's sweeper purged (\d+) plans \(with their Flags\) and (\d+) access records in \S+, from (\d+) expired plans and (\d+) access records written for it`).FindStringSubmatch(report)
	require.NotNil(t, m, report)
	assert.Equal(t, "10", m[3])
	assert.Equal(t, "600", m[4], "as many expired access records as the data set has")
	assert.GreaterOrEqual(t, atoi(t, m[1]), 10, "the expired plans (and their Flags)")
	assert.GreaterOrEqual(t, atoi(t, m[2]), 600)
	for _, name := range []string{"sweep", "sweep-silent", "ping"} {
		var row []string
		for _, l := range strings.Split(report, "\n") {
			if f := strings.Fields(l); len(f) == 10 && f[0] == name {
				row = f
			}
		}
		require.NotEmpty(t, row, "a row for %s in:\n%s", name, report)
		assert.NotEqual(t, "0", row[1], "%s ran", name)
		assert.Equal(t, "0", row[7], "%s had no errors", name)
		if name == "ping" {
			// The server bench started: the CPU an answer cost it, read
			// from its /proc/PID/stat around the measured load.
			assert.Regexp(t, `^\d+(\.\d+)?(µs|ms)$`, row[9], "CPU per request of the server bench started")
		} else {
			assert.Equal(t, "n/a", row[9], "%s: the sweep's CPU is not the answers'", name)
		}
	}
}
