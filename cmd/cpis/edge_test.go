package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestServeNationalEdge boots the whole program as a national-style
// deployment: the FHIR base under /cpis/FHIR/R4, CORS for one origin, its own
// timeouts. The server answers there (and not at /FHIR/R4), seed loads data
// through that base, an oversized header is a 431 OperationOutcome from the
// real http.Server, and a browser preflight is answered without a token.
func TestServeNationalEdge(t *testing.T) {
	dir := t.TempDir()
	vars := map[string]string{
		"CPIS_DATA_DIR":     dir,
		"CPIS_BASE_URL":     "https://cpis.example/cpis/FHIR/R4",
		"CPIS_CORS_ORIGINS": "https://App.example.nhs.uk",
		"CPIS_READ_TIMEOUT": "1m", "CPIS_WRITE_TIMEOUT": "1m", "CPIS_REQUEST_TIMEOUT": "50s",
	}
	s := start(t, vars)
	root := "http://" + s.addr
	base := root + "/cpis/FHIR/R4"

	code, body := call(t, "GET", base+"/metadata", "", "")
	require.Equal(t, 200, code, body)
	assert.Equal(t, "https://cpis.example/cpis/FHIR/R4/metadata", body["url"])
	sec := body["rest"].([]any)[0].(map[string]any)["security"].(map[string]any)
	assert.Equal(t, true, sec["cors"])
	code, body = call(t, "GET", root+"/FHIR/R4/metadata", "", "")
	assert.Equal(t, 404, code)
	assert.Equal(t, "OperationOutcome", body["resourceType"])

	// seed posts its Bundles to the configured base.
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"seed", "--children", "5", "--la-count", "1"}, env(vars), &out))
	assert.Contains(t, out.String(), "seeded 5 children")
	la := mint(t, vars, "--kind", "system", "--org", "LA001")
	code, body = call(t, "GET", base+"/Organization/la001", la, "")
	require.Equal(t, 200, code, body)

	// 431 as an OperationOutcome, through the real server.
	req, err := http.NewRequest("GET", base+"/metadata", nil)
	require.NoError(t, err)
	req.Header.Set("X-Padding", strings.Repeat("p", 100<<10))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode, string(b))
	var oo map[string]any
	require.NoError(t, json.Unmarshal(b, &oo))
	assert.Equal(t, "OperationOutcome", oo["resourceType"])

	// A browser preflight from the configured origin, without a token.
	req, err = http.NewRequest("OPTIONS", base+"/Flag", nil)
	require.NoError(t, err)
	req.Header.Set("Origin", "https://app.example.nhs.uk")
	req.Header.Set("Access-Control-Request-Method", "GET")
	req.Header.Set("Access-Control-Request-Headers", "authorization")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.Equal(t, "https://app.example.nhs.uk", resp.Header.Get("Access-Control-Allow-Origin"))

	// Request lines are written out within 100 ms (see package logsink).
	assert.Eventually(t, func() bool { return strings.Contains(s.logs(), `"route":"/cpis/FHIR/R4/metadata"`) }, 5*time.Second, 20*time.Millisecond)
}
