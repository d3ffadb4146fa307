package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
	"cpis/store/sqlite"
)

// TestHazard_DeletedStoreComesBackEmpty deletes the database under a
// running server: writes and readiness answer 503 (not 201 into a file
// nobody will read again). A restart is refused with one clear line, and
// only `cpis store init --force` lets the server start on an empty store.
func TestHazard_DeletedStoreComesBackEmpty(t *testing.T) {
	dir := t.TempDir()
	vars := map[string]string{"CPIS_DATA_DIR": dir}
	s := start(t, vars)
	base := "http://" + s.addr + "/FHIR/R4"
	la := mint(t, vars, "--kind", "system", "--org", "LA001")
	code, body := call(t, "PUT", base+"/Organization/la001", la, orgBody)
	require.Equal(t, 201, code, body)
	code, body = call(t, "PUT", base+"/EpisodeOfCare/plan1", la, planBody)
	require.Equal(t, 201, code, body)

	for _, suffix := range []string{"", "-wal", "-shm"} {
		require.NoError(t, os.Remove(filepath.Join(dir, sqlite.FileName+suffix)))
	}
	ready := func() int {
		resp, err := http.Get("http://" + s.addr + "/readyz")
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Eventually(t, func() bool { return ready() == http.StatusServiceUnavailable }, 10*time.Second, 50*time.Millisecond,
		"readiness fails once the database file is gone")
	code, _ = call(t, "PUT", base+"/EpisodeOfCare/plan2", la, strings.Replace(planBody, `"plan1"`, `"plan2"`, 1))
	assert.Equal(t, http.StatusServiceUnavailable, code, "a write is refused, not lost")
	code, _ = call(t, "GET", base+"/EpisodeOfCare/plan1", la, "")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, s.logs(), "the database file was deleted while the server was running")
	s.stop(t)

	vars["CPIS_ADDR"] = "127.0.0.1:0"
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := run(ctx, []string{"serve"}, env(vars), &out)
	require.Error(t, err, "the server does not come back empty")
	require.ErrorIs(t, err, store.ErrStoreIdentity)
	assert.Contains(t, err.Error(), "cpis store init --force")
	assert.NotContains(t, err.Error(), "\n", "one line")
	_, statErr := os.Stat(filepath.Join(dir, sqlite.FileName))
	assert.True(t, os.IsNotExist(statErr), "and creates no database")

	out.Reset()
	require.NoError(t, run(context.Background(), []string{"store", "init", "--force"}, env(vars), &out))
	assert.Contains(t, out.String(), "store ready")
	s2 := start(t, vars)
	code, _ = call(t, "GET", "http://"+s2.addr+"/FHIR/R4/EpisodeOfCare/plan1", la, "")
	assert.Equal(t, http.StatusNotFound, code, "the operator accepted an empty store")
}

func TestStoreInitWithoutForceRefusesALostStore(t *testing.T) {
	dir := t.TempDir()
	vars := map[string]string{"CPIS_DATA_DIR": dir}
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"store", "init"}, env(vars), &out), "a fresh directory gets a store")
	require.NoError(t, os.Remove(filepath.Join(dir, sqlite.FileName)))
	err := run(context.Background(), []string{"store", "init"}, env(vars), &out)
	require.ErrorIs(t, err, store.ErrStoreIdentity)
}
