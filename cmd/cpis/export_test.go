package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store/mongo/mongotest"
)

// exportRequest sends a bulk-export request and returns the answer's status,
// headers and body.
func exportRequest(t *testing.T, method, url, token string, headers ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, b
}

// TestExportAcrossProcesses boots two server processes on one MongoDB
// database (the embedded FerretDB): an export kicked off on one is polled,
// downloaded and cancelled on the other, through the whole program (the
// metrics-observed store included), so the job's state and files live in
// the store, not in the process that runs it.
func TestExportAcrossProcesses(t *testing.T) {
	f, err := mongotest.Start(t.TempDir(), "127.0.0.1:0")
	require.NoError(t, err)
	defer f.Stop()
	db := mongotest.FreshDB()
	varsA := map[string]string{"CPIS_DATA_DIR": t.TempDir(), "CPIS_MONGODB_URI": f.URI, "CPIS_MONGODB_DATABASE": db}
	a := start(t, varsA)
	// The second process signs with the first one's local key, as servers
	// behind one identity provider would share its keys.
	varsB := map[string]string{"CPIS_DATA_DIR": varsA["CPIS_DATA_DIR"], "CPIS_MONGODB_URI": f.URI, "CPIS_MONGODB_DATABASE": db}
	b := start(t, varsB)
	baseA, baseB := "http://"+a.addr+"/FHIR/R4", "http://"+b.addr+"/FHIR/R4"
	la := mint(t, varsA, "--kind", "system", "--org", "LA001", "--scope", "system/EpisodeOfCare.* system/Organization.* system/Export.read")

	code, body := call(t, "PUT", baseA+"/Organization/la001", la, orgBody)
	require.Equal(t, 201, code, body)
	code, body = call(t, "PUT", baseA+"/EpisodeOfCare/plan1", la, planBody)
	require.Equal(t, 201, code, body)

	code, h, raw := exportRequest(t, "GET", baseA+"/$export?_type=EpisodeOfCare,Flag", la, "Prefer", "respond-async", "Accept", "application/fhir+json")
	require.Equal(t, http.StatusAccepted, code, string(raw))
	status := h.Get("Content-Location")
	require.True(t, strings.HasPrefix(status, "http://localhost:8080/FHIR/R4/$export-status/"), status)
	// The configured base is the public one; ask process B for the same path.
	onB := baseB + strings.TrimPrefix(status, "http://localhost:8080/FHIR/R4")

	deadline := time.Now().Add(20 * time.Second)
	for {
		code, h, raw = exportRequest(t, "GET", onB, la)
		if code != http.StatusAccepted {
			break
		}
		assert.NotEmpty(t, h.Get("X-Progress"), "a running export says what it is doing")
		require.True(t, time.Now().Before(deadline), "never finished")
		time.Sleep(20 * time.Millisecond)
	}
	require.Equal(t, http.StatusOK, code, string(raw))
	var m struct {
		Output []struct{ Type, URL string }
	}
	require.NoError(t, json.Unmarshal(raw, &m))
	require.Len(t, m.Output, 2)
	for _, o := range m.Output {
		code, h, raw = exportRequest(t, "GET", baseB+strings.TrimPrefix(o.URL, "http://localhost:8080/FHIR/R4"), la, "Accept", "application/fhir+ndjson")
		require.Equal(t, http.StatusOK, code, string(raw))
		assert.Equal(t, "application/fhir+ndjson", h.Get("Content-Type"))
		sc := bufio.NewScanner(strings.NewReader(string(raw)))
		n := 0
		for sc.Scan() {
			var res map[string]any
			require.NoError(t, json.Unmarshal(sc.Bytes(), &res))
			assert.Equal(t, o.Type, res["resourceType"])
			assert.Equal(t, "plan1", res["id"])
			n++
		}
		assert.Equal(t, 1, n)
	}
	code, _, raw = exportRequest(t, "DELETE", onB, la)
	assert.Equal(t, http.StatusAccepted, code, string(raw))
	code, _, _ = exportRequest(t, "GET", baseA+strings.TrimPrefix(status, "http://localhost:8080/FHIR/R4"), la)
	assert.Equal(t, http.StatusNotFound, code, "cancelled on B, gone on A")
	a.stop(t) // every line written out (request lines wait in a buffer)
	b.stop(t)
	assert.NotContains(t, a.logs()+b.logs(), "9449306753", "no NHS number in any log line")
}
