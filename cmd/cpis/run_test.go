package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store/mongo/mongotest"
)

// server is one `cpis serve` started through run.
type server struct {
	addr   string
	cancel context.CancelFunc
	done   chan error
	read   chan struct{} // closed once every line the server wrote is read
	mu     sync.Mutex
	lines  []string
}

func (s *server) logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// start runs the server on 127.0.0.1:0 and waits for /readyz. With
// CPIS_ADDR given it runs there instead, and does not wait for the
// "listening" line (an info line, not written at CPIS_LOG_LEVEL=warn).
func start(t *testing.T, vars map[string]string) *server {
	t.Helper()
	fixed := vars["CPIS_ADDR"]
	if fixed == "" || strings.HasSuffix(fixed, ":0") { // a restart with the same vars: a port again
		fixed, vars["CPIS_ADDR"] = "", "127.0.0.1:0"
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	s := &server{cancel: cancel, done: make(chan error, 1), read: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		defer close(s.read)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.lines = append(s.lines, line)
			s.mu.Unlock()
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "listening" {
				addr <- m["addr"].(string)
			}
		}
	}()
	go func() { s.done <- run(ctx, []string{"serve"}, env(vars), pw); pw.Close() }()
	wait := 10 * time.Second
	if fixed != "" {
		s.addr, wait = fixed, 30*time.Second
	} else {
		select {
		case s.addr = <-addr:
		case err := <-s.done:
			t.Fatalf("server stopped: %v", err)
		case <-time.After(20 * time.Second):
			t.Fatal("server did not start")
		}
	}
	deadline := time.Now().Add(wait)
	for {
		resp, err := http.Get("http://" + s.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case err := <-s.done:
			t.Fatalf("server stopped: %v", err)
		default:
		}
		require.True(t, time.Now().Before(deadline), "never ready")
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() { s.stop(t) })
	return s
}

func (s *server) stop(t *testing.T) {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.done:
		assert.NoError(t, err)
		<-s.read // the log's last lines (the server writes them out as it stops)
	case <-time.After(25 * time.Second):
		t.Error("server did not shut down")
	}
}

func mint(t *testing.T, vars map[string]string, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), append([]string{"token"}, args...), env(vars), &out))
	tok := strings.TrimSpace(out.String())
	require.Equal(t, 2, strings.Count(tok, "."), "only the token is printed: %q", tok)
	return tok
}

func call(t *testing.T, method, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var m map[string]any
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

const orgBody = `{"resourceType":"Organization","id":"la001",
 "identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"LA001"}],"name":"Local Authority 001",
 "contact":[{"purpose":{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/la-contact-purpose","code":"office-hours"}]},"telecom":[{"system":"phone","value":"0300 123 1000"}]},
 {"purpose":{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/la-contact-purpose","code":"emergency-duty-team"}]},"telecom":[{"system":"phone","value":"0300 123 9999"}]}]}`

const planBody = `{"resourceType":"EpisodeOfCare","id":"plan1","status":"active",
 "type":[{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/plan-type","code":"CPP"}]}],
 "patient":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9449306753"}},
 "managingOrganization":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"LA001"}},
 "period":{"start":"2026-01-10"}}`

// TestServeEndToEnd boots the whole program on each backend, walks the
// contract's story over HTTP, restarts it and finds the data still there.
func TestServeEndToEnd(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { endToEnd(t, map[string]string{"CPIS_DATA_DIR": t.TempDir()}) })
	t.Run("ferretdb", func(t *testing.T) {
		f, err := mongotest.Start(t.TempDir(), "127.0.0.1:0")
		require.NoError(t, err)
		defer f.Stop()
		endToEnd(t, map[string]string{"CPIS_DATA_DIR": t.TempDir(), "CPIS_MONGODB_URI": f.URI, "CPIS_MONGODB_DATABASE": mongotest.FreshDB()})
	})
	if uri := os.Getenv(mongotest.EnvURI); uri != "" {
		t.Run("mongodb", func(t *testing.T) {
			endToEnd(t, map[string]string{"CPIS_DATA_DIR": t.TempDir(), "CPIS_MONGODB_URI": uri, "CPIS_MONGODB_DATABASE": mongotest.FreshDB()})
		})
	}
}

// TestSilentReadWrittenAtWarnLevel: a silent read's security-log line is
// its only record, so serve writes it whatever CPIS_LOG_LEVEL is, through
// the same handlers (the log sink, the metrics' count) it writes every line
// with, and without the NHS number.
func TestSilentReadWrittenAtWarnLevel(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	vars := map[string]string{"CPIS_DATA_DIR": t.TempDir(), "CPIS_LOG_LEVEL": "warn", "CPIS_ADDR": addr}
	s := start(t, vars)
	base := "http://" + s.addr + "/FHIR/R4"
	la := mint(t, vars, "--kind", "system", "--org", "LA001")
	gp := mint(t, vars, "--kind", "user", "--activity", "B0170")
	code, body := call(t, "PUT", base+"/Organization/la001", la, orgBody)
	require.Equal(t, 201, code, body)
	code, body = call(t, "PUT", base+"/EpisodeOfCare/plan1", la, planBody)
	require.Equal(t, 201, code, body)
	code, body = call(t, "GET", base+"/Flag?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|9449306753&silent=true", gp, "")
	require.Equal(t, 200, code, body)
	assert.EqualValues(t, 1, body["total"])
	s.stop(t)
	logs := s.logs()
	assert.Equal(t, 1, strings.Count(logs, `"msg":"silent read"`), logs)
	assert.Contains(t, logs, `"log":"security"`)
	assert.NotContains(t, logs, `"msg":"request"`, "the level holds for every other line")
	assert.NotContains(t, logs, "9449306753", "no NHS number in any log line")
}

func endToEnd(t *testing.T, vars map[string]string) {
	dir := vars["CPIS_DATA_DIR"]
	s := start(t, vars)
	base := "http://" + s.addr + "/FHIR/R4"
	la := mint(t, vars, "--kind", "system", "--org", "LA001")
	nurse := mint(t, vars, "--kind", "user", "--activity", "B0107")

	info, err := os.Stat(filepath.Join(dir, "local-signing-key.pem"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "the local key is private")
	assert.Contains(t, s.logs(), "LOCAL MODE", "start-up warns that tokens are self-issued")

	code, _ := call(t, "GET", base+"/metadata", "", "")
	assert.Equal(t, 200, code)
	code, body := call(t, "PUT", base+"/Organization/la001", la, orgBody)
	require.Equal(t, 201, code, body)
	code, body = call(t, "PUT", base+"/EpisodeOfCare/plan1", la, planBody)
	require.Equal(t, 201, code, body)
	search := base + "/Flag?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|9449306753&_include=Flag:author"
	code, body = call(t, "GET", search, nurse, "")
	require.Equal(t, 200, code, body)
	assert.EqualValues(t, 1, body["total"])
	assert.Len(t, body["entry"], 2)
	code, _ = call(t, "GET", search, "", "")
	assert.Equal(t, 401, code)

	code, _ = call(t, "GET", base+"/Flag/plan1", nurse, "")
	assert.Equal(t, 200, code)
	resp, err := http.Get("http://" + s.addr + "/metrics")
	require.NoError(t, err)
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`cpis_http_requests_total{method="GET",route="/FHIR/R4/Flag",status="200"} 1`,
		`cpis_http_requests_total{method="GET",route="/FHIR/R4/Flag/:id",status="200"} 1`,
		`cpis_store_operation_duration_seconds_count{op="audit"} 2`,
		`cpis_store_group_commit_operations_count`,
	} {
		assert.Contains(t, string(metrics), want)
	}
	assert.NotContains(t, string(metrics), "plan1", "metrics are never labelled by a raw path or an id")
	assert.NotContains(t, string(metrics), "9449306753")

	s.stop(t)
	assert.NotContains(t, s.logs(), "9449306753", "no NHS number in any log line")
	assert.Contains(t, s.logs(), `"route":"/FHIR/R4/Flag"`)

	s2 := start(t, vars)
	code, body = call(t, "GET", "http://"+s2.addr+"/FHIR/R4/Flag/plan1", nurse, "")
	assert.Equal(t, 200, code, "data survives a restart: %v", body)
}

func TestBadConfigurationStopsStartup(t *testing.T) {
	cases := []struct {
		name string
		vars map[string]string
		want string
	}{
		{"retention", map[string]string{"CPIS_RETENTION_DAYS": "soon"}, "CPIS_RETENTION_DAYS"},
		{"base-url", map[string]string{"CPIS_BASE_URL": "not a url"}, "CPIS_BASE_URL"},
		{"addr", map[string]string{"CPIS_ADDR": "8080"}, "CPIS_ADDR"},
		{"jwks-without-issuer", map[string]string{"CPIS_JWKS_URL": "https://idp.example/jwks"}, "CPIS_JWT_ISSUER"},
		{"jwks-file-missing", map[string]string{"CPIS_JWKS_FILE": "/nonexistent/jwks.json", "CPIS_JWT_ISSUER": "i", "CPIS_JWT_AUDIENCE": "a"}, "CPIS_JWKS_FILE"},
		{"rbac-file-bad", map[string]string{"CPIS_RBAC_FILE": "/nonexistent/rbac.json"}, "CPIS_RBAC_FILE"},
		{"mongo-uri", map[string]string{"CPIS_MONGODB_URI": "postgres://x"}, "CPIS_MONGODB_URI"},
		{"log-level", map[string]string{"CPIS_LOG_LEVEL": "loud"}, "CPIS_LOG_LEVEL"},
		{"cors-any-origin", map[string]string{"CPIS_CORS_ORIGINS": "https://app.example, *"}, "CPIS_CORS_ORIGINS"},
		{"cors-not-an-origin", map[string]string{"CPIS_CORS_ORIGINS": "app.example"}, "CPIS_CORS_ORIGINS"},
		{"base-url-without-path", map[string]string{"CPIS_BASE_URL": "https://cpis.example"}, "CPIS_BASE_URL"},
		{"base-url-odd-path", map[string]string{"CPIS_BASE_URL": "https://cpis.example/FHIR/:x"}, "CPIS_BASE_URL"},
		{"read-header-timeout", map[string]string{"CPIS_READ_HEADER_TIMEOUT": "10"}, "CPIS_READ_HEADER_TIMEOUT"},
		{"read-timeout", map[string]string{"CPIS_READ_TIMEOUT": "0s"}, "CPIS_READ_TIMEOUT"},
		{"write-timeout", map[string]string{"CPIS_WRITE_TIMEOUT": "-1m"}, "CPIS_WRITE_TIMEOUT"},
		{"idle-timeout", map[string]string{"CPIS_IDLE_TIMEOUT": "forever"}, "CPIS_IDLE_TIMEOUT"},
		{"request-not-under-write-timeout", map[string]string{"CPIS_WRITE_TIMEOUT": "30s"}, "CPIS_REQUEST_TIMEOUT"},
		{"max-token-lifetime", map[string]string{"CPIS_MAX_TOKEN_LIFETIME": "1 day"}, "CPIS_MAX_TOKEN_LIFETIME"},
		{"max-token-lifetime-zero", map[string]string{"CPIS_MAX_TOKEN_LIFETIME": "0s"}, "CPIS_MAX_TOKEN_LIFETIME"},
		{"dq-ucpp-months", map[string]string{"CPIS_DQ_UCPP_MONTHS": "ten"}, "CPIS_DQ_UCPP_MONTHS"},
		{"dq-correction-days-zero", map[string]string{"CPIS_DQ_CORRECTION_DAYS": "0"}, "CPIS_DQ_CORRECTION_DAYS"},
		{"export-expiry", map[string]string{"CPIS_EXPORT_EXPIRY": "1 hour"}, "CPIS_EXPORT_EXPIRY"},
		{"export-expiry-too-long", map[string]string{"CPIS_EXPORT_EXPIRY": "720h"}, "CPIS_EXPORT_EXPIRY"},
		{"dq-refresh", map[string]string{"CPIS_DQ_REFRESH": "often"}, "CPIS_DQ_REFRESH"},
		{"dq-refresh-too-often", map[string]string{"CPIS_DQ_REFRESH": "5s"}, "CPIS_DQ_REFRESH"},
		{"dq-max-per-rule", map[string]string{"CPIS_DQ_MAX_PER_RULE": "0"}, "CPIS_DQ_MAX_PER_RULE"},
		{"dq-max-per-rule-word", map[string]string{"CPIS_DQ_MAX_PER_RULE": "all"}, "CPIS_DQ_MAX_PER_RULE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.vars["CPIS_DATA_DIR"] = t.TempDir()
			var out bytes.Buffer
			err := run(context.Background(), nil, env(tc.vars), &out)
			require.Error(t, err)
			var ce *configError
			require.ErrorAs(t, err, &ce)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "\n", "one line")
		})
	}
}

func TestTokenCommand(t *testing.T) {
	vars := map[string]string{"CPIS_DATA_DIR": t.TempDir()}
	tok := mint(t, vars, "--kind", "user", "--activity", "B0170", "--name", "Dr Sam Patel")
	parts := strings.Split(tok, ".")
	payload, err := decodeSegment(parts[1])
	require.NoError(t, err)
	assert.Equal(t, "Dr Sam Patel", payload["name"])
	assert.Equal(t, "cpis-local", payload["iss"])

	var out bytes.Buffer
	err = run(context.Background(), []string{"token", "--kind", "system"}, env(map[string]string{
		"CPIS_DATA_DIR": t.TempDir(), "CPIS_JWKS_URL": "https://idp.example/jwks", "CPIS_JWT_ISSUER": "i", "CPIS_JWT_AUDIENCE": "a",
	}), &out)
	require.Error(t, err, "no local tokens when a JWKS is configured")
	assert.Contains(t, err.Error(), "local mode")
	err = run(context.Background(), []string{"token", "--kind", "admin"}, env(vars), &out)
	require.Error(t, err)
}

func decodeSegment(s string) (map[string]any, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m)
}

// CPIS_MAX_TOKEN_LIFETIME reaches the verifier: a token that lives longer
// is refused, a shorter one accepted.
func TestMaxTokenLifetimeIsEnforced(t *testing.T) {
	vars := map[string]string{"CPIS_DATA_DIR": t.TempDir(), "CPIS_MAX_TOKEN_LIFETIME": "30m"}
	s := start(t, vars)
	ping := "http://" + s.addr + "/FHIR/R4/_ping"
	code, body := call(t, "GET", ping, mint(t, vars, "--kind", "user", "--activity", "B0107", "--lifetime", "20m"), "")
	assert.Equal(t, 200, code, body)
	code, body = call(t, "GET", ping, mint(t, vars, "--kind", "user", "--activity", "B0107", "--lifetime", "1h"), "")
	assert.Equal(t, 401, code, body)
}
