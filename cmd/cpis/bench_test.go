package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBenchAgainstARunningServer runs the load command briefly against a
// server started through run, seeding a few children over HTTP: every
// scenario answers without errors.
func TestBenchAgainstARunningServer(t *testing.T) {
	dir := t.TempDir()
	vars := map[string]string{"CPIS_DATA_DIR": dir}
	s := start(t, vars)
	var out bytes.Buffer
	err := run(context.Background(), []string{"bench", "--target", "http://" + s.addr, "--data-dir", dir,
		"--children", "60", "--concurrency", "4", "--duration", "200ms", "--warmup", "0s", "--transactions", "1"}, env(vars), &out)
	require.NoError(t, err, out.String())
	report := out.String()
	assert.Contains(t, report, "seeded 60 children")
	for _, name := range scenarioNames() {
		var line string
		for _, l := range strings.Split(report, "\n") {
			if f := strings.Fields(l); len(f) > 7 && f[0] == name {
				line = l
			}
		}
		require.NotEmpty(t, line, "a row for %s in:\n%s", name, report)
		f := strings.Fields(line)
		assert.Equal(t, "0", f[len(f)-2], "%s had errors: %s", name, line)
	}
}
