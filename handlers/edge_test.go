package handlers_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/handlers"
)

// The HTTP edge: CORS, compression, _format spellings, oversized headers,
// the national API's headers and base path, and the request deadline.

const appOrigin = "https://app.example.nhs.uk"

func withCORS(origins ...string) envOption {
	return func(d *handlers.Deps) { d.CORSOrigins = origins }
}

func withBase(u string) envOption {
	return func(d *handlers.Deps) { d.BaseURL = u }
}

// raw sends a request through the real engine and returns the recorder,
// without decoding the body (it may be gzipped).
func (e *env) raw(req *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, req)
	return w
}

func preflight(path, origin, method, headers string) *http.Request {
	req := httptest.NewRequest(http.MethodOptions, path, nil)
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", method)
	if headers != "" {
		req.Header.Set("Access-Control-Request-Headers", headers)
	}
	return req
}

// capabilityCORS is rest[0].security.cors of the CapabilityStatement.
func (e *env) capabilityCORS() bool {
	e.t.Helper()
	r := e.do(http.MethodGet, "metadata", "", "")
	require.Equal(e.t, http.StatusOK, r.Code)
	var cs struct {
		Rest []struct {
			Security struct {
				CORS bool `json:"cors"`
			} `json:"security"`
		} `json:"rest"`
	}
	require.NoError(e.t, json.Unmarshal(r.Body.Bytes(), &cs))
	require.Len(e.t, cs.Rest, 1)
	return cs.Rest[0].Security.CORS
}

func TestCORS(t *testing.T) {
	t.Run("off-by-default", func(t *testing.T) {
		e := newEnv(t, backends()[0])
		w := e.raw(preflight("/FHIR/R4/Flag", appOrigin, "GET", "authorization"))
		assert.Empty(t, w.Header().Get("Access-Control-Allow-Origin"))
		assert.Empty(t, w.Header().Get("Access-Control-Allow-Methods"))
		assert.NotEqual(t, http.StatusNoContent, w.Code)
		r := e.do(http.MethodGet, "metadata", "", "", "Origin", appOrigin)
		assert.Equal(t, http.StatusOK, r.Code)
		assert.Empty(t, r.Header().Get("Access-Control-Allow-Origin"))
		assert.False(t, e.capabilityCORS(), "the CapabilityStatement says CORS is off")
	})

	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, withCORS(appOrigin, "http://localhost:3000"))
		e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
		assert.True(t, e.capabilityCORS(), "the CapabilityStatement says CORS is on")

		t.Run("preflight-allowed-origin-204-without-token", func(t *testing.T) {
			w := e.raw(preflight("/FHIR/R4/EpisodeOfCare/a1", appOrigin, "PUT", "authorization,content-type,if-match,traceid"))
			require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
			h := w.Header()
			assert.Equal(t, appOrigin, h.Get("Access-Control-Allow-Origin"))
			assert.Empty(t, h.Get("Access-Control-Allow-Credentials"), "bearer tokens, never cookies")
			methods := h.Get("Access-Control-Allow-Methods")
			for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"} {
				assert.Contains(t, methods, m)
			}
			allowed := strings.ToLower(h.Get("Access-Control-Allow-Headers"))
			for _, name := range []string{"Authorization", "Content-Type", "Prefer", "If-Match", "If-None-Match", "If-None-Exist",
				"If-Modified-Since", "TraceID", "X-Request-ID", "X-Correlation-ID", "IsUnscheduledAccessEvent"} {
				assert.Contains(t, allowed, strings.ToLower(name))
			}
			assert.NotEmpty(t, h.Get("Access-Control-Max-Age"))
			assert.Contains(t, h.Values("Vary"), "Origin")
			assert.Empty(t, w.Body.String())
		})
		t.Run("preflight-other-origin-403-without-cors-headers", func(t *testing.T) {
			for _, origin := range []string{"https://evil.example", "null", "https://app.example.nhs.uk.evil.example", "http://app.example.nhs.uk"} {
				w := e.raw(preflight("/FHIR/R4/Flag", origin, "GET", "authorization"))
				assert.Equal(t, http.StatusForbidden, w.Code, origin)
				for k := range w.Header() {
					assert.False(t, strings.HasPrefix(k, "Access-Control-"), "%s: %s", origin, k)
				}
				e.requireValidR4(w.Body.Bytes())
			}
		})
		t.Run("request-allowed-origin-readable", func(t *testing.T) {
			r := e.do(http.MethodGet, "Flag/a1", e.nurse(), "", "Origin", appOrigin)
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Equal(t, appOrigin, r.Header().Get("Access-Control-Allow-Origin"))
			exposed := strings.ToLower(r.Header().Get("Access-Control-Expose-Headers"))
			for _, name := range []string{"ETag", "Location", "Last-Modified", "X-Request-ID", "Content-Location", "TraceID"} {
				assert.Contains(t, exposed, strings.ToLower(name))
			}
			assert.Contains(t, r.Header().Values("Vary"), "Origin")
			// An error is readable too.
			r = e.do(http.MethodGet, "Flag/a1", "", "", "Origin", "http://localhost:3000")
			assert.Equal(t, http.StatusUnauthorized, r.Code)
			assert.Equal(t, "http://localhost:3000", r.Header().Get("Access-Control-Allow-Origin"))
		})
		t.Run("request-other-origin-not-readable", func(t *testing.T) {
			r := e.do(http.MethodGet, "metadata", "", "", "Origin", "https://evil.example")
			assert.Equal(t, http.StatusOK, r.Code)
			assert.Empty(t, r.Header().Get("Access-Control-Allow-Origin"))
			assert.Empty(t, r.Header().Get("Access-Control-Expose-Headers"))
			assert.Contains(t, r.Header().Values("Vary"), "Origin")
		})
	})

	t.Run("origins-checked", func(t *testing.T) {
		for _, tc := range []struct{ in, want, err string }{
			{in: "https://App.Example.nhs.uk", want: "https://app.example.nhs.uk"},
			{in: "https://app.example:443", want: "https://app.example"},
			{in: "http://localhost:3000/", want: "http://localhost:3000"},
			{in: "*", err: `"*" is not allowed`},
			{in: "https://*.example", err: "not an origin"},
			{in: "app.example", err: "not an origin"},
			{in: "https://app.example/path", err: "not an origin"},
			{in: "ftp://app.example", err: "not an origin"},
		} {
			got, err := handlers.CORSOrigin(tc.in)
			if tc.err != "" {
				assert.ErrorContains(t, err, tc.err, tc.in)
				continue
			}
			assert.NoError(t, err, tc.in)
			assert.Equal(t, tc.want, got)
		}
	})
}

func gzipped(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write(b)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// bomb is prefix and then n bytes of c, gzipped.
func bomb(t testing.TB, prefix string, n int, c byte) []byte {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	require.NoError(t, err)
	_, err = zw.Write([]byte(prefix))
	require.NoError(t, err)
	chunk := bytes.Repeat([]byte{c}, 1<<16)
	for i := 0; i < n/len(chunk); i++ {
		_, err := zw.Write(chunk)
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

func gunzip(t testing.TB, b []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	require.NoError(t, err)
	out, err := io.ReadAll(zr)
	require.NoError(t, err)
	return out
}

func TestCompression(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		la := e.laToken(la1)
		e.putPlan(planSpec{id: "z0", nhs: nhsA, la: la1, planType: "LAC"})

		t.Run("gzip-request-body-201", func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPut, "/FHIR/R4/EpisodeOfCare/z1", bytes.NewReader(gzipped(t, []byte(planJSON(planSpec{id: "z1", nhs: nhsA, la: la1})))))
			req.Header.Set("Content-Type", "application/fhir+json")
			req.Header.Set("Content-Encoding", "gzip")
			req.Header.Set("Authorization", "Bearer "+la)
			w := e.raw(req)
			require.Equal(t, http.StatusCreated, w.Code, w.Body.String())
			e.requireValidR4(w.Body.Bytes())
			r := e.do(http.MethodGet, "EpisodeOfCare/z1", la, "")
			require.Equal(t, http.StatusOK, r.Code)
			assert.Equal(t, nhsA, jget(t, r.json(), "patient", "identifier", "value"))
		})

		search := "/FHIR/R4/EpisodeOfCare?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|" + nhsA
		t.Run("gzip-response-when-asked", func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, search, nil)
			req.Header.Set("Authorization", "Bearer "+la)
			req.Header.Set("Accept-Encoding", "gzip, deflate, br")
			w := e.raw(req)
			require.Equal(t, http.StatusOK, w.Code)
			assert.Equal(t, "gzip", w.Header().Get("Content-Encoding"))
			assert.Contains(t, w.Header().Values("Vary"), "Accept-Encoding")
			assert.Contains(t, w.Header().Get("Content-Type"), "application/fhir+json")
			assert.Less(t, w.Body.Len(), 1024)
			body := gunzip(t, w.Body.Bytes())
			require.Greater(t, len(body), 1024, "the Bundle is over the compression threshold")
			e.requireValidR4(body)
			var bundle struct {
				ResourceType string `json:"resourceType"`
				Total        int    `json:"total"`
			}
			require.NoError(t, json.Unmarshal(body, &bundle))
			assert.Equal(t, "Bundle", bundle.ResourceType)
			assert.Equal(t, 2, bundle.Total)
		})

		t.Run("no-gzip-unless-asked-or-small", func(t *testing.T) {
			for _, tc := range []struct{ path, accept string }{
				{search, ""},
				{search, "gzip;q=0"},
				{search, "br"},
				{"/FHIR/R4/_ping", "gzip"},            // under 1 KB
				{"/FHIR/R4/EpisodeOfCare/z1", "gzip"}, // under 1 KB
			} {
				req := httptest.NewRequest(http.MethodGet, tc.path, nil)
				req.Header.Set("Authorization", "Bearer "+la)
				if tc.accept != "" {
					req.Header.Set("Accept-Encoding", tc.accept)
				}
				w := e.raw(req)
				require.Equal(t, http.StatusOK, w.Code, tc)
				assert.Empty(t, w.Header().Get("Content-Encoding"), tc)
				e.requireValidR4(w.Body.Bytes())
			}
		})

		t.Run("bomb-413-without-large-memory", func(t *testing.T) {
			// 64 MiB of zeros is 64 KiB gzipped; the plan limit is 1 MiB.
			z := bomb(t, "", 64<<20, 0)
			require.Less(t, len(z), 512<<10)
			req := httptest.NewRequest(http.MethodPut, "/FHIR/R4/EpisodeOfCare/bomb", bytes.NewReader(z))
			req.Header.Set("Content-Type", "application/fhir+json")
			req.Header.Set("Content-Encoding", "gzip")
			req.Header.Set("Authorization", "Bearer "+la)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			w := e.raw(req)
			runtime.ReadMemStats(&after)
			require.Equal(t, http.StatusRequestEntityTooLarge, w.Code, w.Body.String())
			e.requireValidR4(w.Body.Bytes())
			assert.Contains(t, w.Body.String(), "INVALID_VALUE")
			assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(16<<20), "the body was decompressed only up to the limit")
			assert.Equal(t, http.StatusNotFound, e.do(http.MethodGet, "EpisodeOfCare/bomb", la, "").Code, "nothing was written")
		})

		t.Run("bundle-bomb-413", func(t *testing.T) {
			// A Bundle whose first entry is 64 MiB, past the 32 MiB limit.
			z := bomb(t, `{"resourceType":"Bundle","type":"batch","entry":[{"fullUrl":"urn:uuid:`, 64<<20, 'a')
			req := httptest.NewRequest(http.MethodPost, "/FHIR/R4", bytes.NewReader(z))
			req.Header.Set("Content-Type", "application/fhir+json")
			req.Header.Set("Content-Encoding", "gzip")
			req.Header.Set("Authorization", "Bearer "+la)
			w := e.raw(req)
			require.Equal(t, http.StatusRequestEntityTooLarge, w.Code, w.Body.String())
			e.requireValidR4(w.Body.Bytes())
		})

		t.Run("other-encodings-refused", func(t *testing.T) {
			body := planJSON(planSpec{id: "z2", nhs: nhsB, la: la1})
			for _, tc := range []struct {
				enc, body string
				status    int
			}{
				{"br", body, http.StatusUnsupportedMediaType},
				{"deflate", body, http.StatusUnsupportedMediaType},
				{"gzip, gzip", string(gzipped(t, gzipped(t, []byte(body)))), http.StatusUnsupportedMediaType},
				{"gzip", body, http.StatusBadRequest},
			} {
				r := e.do(http.MethodPut, "EpisodeOfCare/z2", la, tc.body, "Content-Encoding", tc.enc)
				assert.Equal(t, tc.status, r.Code, "%s: %s", tc.enc, r.Body.String())
				assert.Equal(t, "INVALID_VALUE", r.code())
			}
			assert.Equal(t, http.StatusNotFound, e.do(http.MethodGet, "EpisodeOfCare/z2", la, "").Code, "nothing was written")
			r := e.do(http.MethodPut, "EpisodeOfCare/z2", la, body, "Content-Encoding", "identity")
			assert.Equal(t, http.StatusCreated, r.Code, r.Body.String())
		})
	})
}

func TestFormatSpellings(t *testing.T) {
	e := newEnv(t, backends()[0])
	for _, tc := range []struct {
		format string // as typed in the URL
		status int
	}{
		{"json", 200},
		{"JSON", 200},
		{"application/json", 200},
		{"application/fhir+json", 200}, // a raw "+" arrives as a space
		{"application%2Ffhir%2Bjson", 200},
		{"application/json+fhir", 200},
		{"application/fhir+json%3BfhirVersion%3D4.0", 200},
		{"application/fhir+json%3B+fhirVersion%3D4.0", 200},
		{"application%2Ffhir%2Bjson%3B%20fhirVersion%3D4.0%3B%20charset%3DUTF-8", 200},
		{"application/json%3Bcharset%3Dutf-8", 200},
		{"application/fhir+json%3BfhirVersion%3D3.0", 406},
		{"application/fhir+json%3Bcharset%3Diso-8859-1", 406},
		{"xml", 406},
		{"application/fhir+xml", 406},
		{"application%2Ffhir%2Bxml", 406},
		{"application/xml", 406},
		{"text/xml", 406},
		{"html", 406},
		{"ttl", 406},
	} {
		t.Run(tc.format, func(t *testing.T) {
			r := e.do(http.MethodGet, "metadata?_format="+tc.format, "", "")
			require.Equal(t, tc.status, r.Code, r.Body.String())
			assert.Contains(t, r.Header().Get("Content-Type"), "application/fhir+json")
			if tc.status != 200 {
				assert.Equal(t, "INVALID_VALUE", r.code())
			}
		})
	}
}

// TestOversizedHeaders431 runs the engine in a real http.Server on a
// loopback port, as serve does, since the server's own limit decides which
// answers are Go's and which are the handlers'.
func TestOversizedHeaders431(t *testing.T) {
	e := newEnv(t, backends()[0])
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: e.h, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: handlers.ServerMaxHeaderBytes}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	url := "http://" + ln.Addr().String() + "/FHIR/R4/metadata"

	get := func(headerBytes int) *http.Response {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		require.NoError(t, err)
		req.Header.Set("X-Request-ID", "big-1")
		if headerBytes > 0 {
			req.Header.Set("X-Padding", strings.Repeat("a", headerBytes))
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	resp := get(0)
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	resp = get(100 << 10)
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("Content-Type"), "application/fhir+json")
	assert.Equal(t, "big-1", resp.Header.Get("X-Request-ID"))
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	e.requireValidR4(body)
	assert.Contains(t, string(body), "INVALID_VALUE")

}

func TestIsUnscheduledAccessEventHeader(t *testing.T) {
	e := newEnv(t, backends()[0])
	e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
	nurse, gp, la := e.nurse(), e.gp(), e.laToken(la1)
	routes := []struct{ method, path, token, body string }{
		{http.MethodGet, "metadata", "", ""},
		{http.MethodGet, flagSearch(nhsA), gp, ""},
		{http.MethodGet, "Flag/a1", nurse, ""},
		{http.MethodGet, "AuditEvent?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|" + nhsA, nurse, ""},
		{http.MethodPut, "EpisodeOfCare/a1", la, planJSON(planSpec{id: "a1", nhs: nhsA, la: la1})},
		{http.MethodGet, "/healthz", "", ""},
		{http.MethodGet, "Patient/1", nurse, ""},
	}
	for _, bad := range []string{"yes", "1", "0", "no", "truee", "", "true,false", "t"} {
		for _, rt := range routes {
			t.Run(fmt.Sprintf("%q-%s-%s-400", bad, rt.method, rt.path), func(t *testing.T) {
				r := e.do(rt.method, rt.path, rt.token, rt.body, "IsUnscheduledAccessEvent", bad)
				require.Equal(t, http.StatusBadRequest, r.Code, r.Body.String())
				var oo struct {
					Issue []struct {
						Code    string `json:"code"`
						Details struct {
							Coding []struct{ Code string } `json:"coding"`
						} `json:"details"`
					} `json:"issue"`
				}
				require.NoError(t, json.Unmarshal(r.Body.Bytes(), &oo))
				require.Len(t, oo.Issue, 1)
				assert.Equal(t, "invalid", oo.Issue[0].Code)
				require.Len(t, oo.Issue[0].Details.Coding, 1)
				assert.Equal(t, "PRECONDITION_FAILED", oo.Issue[0].Details.Coding[0].Code)
			})
		}
	}
	assert.Empty(t, e.auditOf(nhsA), "a refused request reads nothing and audits nothing")
	r := e.do(http.MethodGet, "EpisodeOfCare/a1", la, "")
	assert.Equal(t, `W/"1"`, r.Header().Get("ETag"), "a refused write changes nothing")

	// true (any case) is an unscheduled, audited read; false a silent one.
	require.Equal(t, http.StatusOK, e.do(http.MethodGet, flagSearch(nhsA), nurse, "", "IsUnscheduledAccessEvent", "TRUE").Code)
	assert.Len(t, e.auditOf(nhsA), 1)
	require.Equal(t, http.StatusOK, e.do(http.MethodGet, flagSearch(nhsA), gp, "", "IsUnscheduledAccessEvent", "False").Code)
	assert.Len(t, e.auditOf(nhsA), 1, "the silent read wrote no AuditEvent")
	require.Equal(t, http.StatusOK, e.do(http.MethodGet, flagSearch(nhsA), nurse, "").Code)
	assert.Len(t, e.auditOf(nhsA), 2, "absent means unscheduled")
}

func TestTraceIDRecordedInTheAuditEvent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
		const trace = "9f1c2d3e-trace/ABC 123"
		r := e.do(http.MethodGet, flagSearch(nhsA), e.nurse(), "", "TraceID", trace, "X-Request-ID", "req-1")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		assert.Equal(t, trace, r.Header().Get("TraceID"))
		assert.Equal(t, "req-1", r.Header().Get("X-Request-ID"))

		feed := e.do(http.MethodGet, "AuditEvent?date=ge2026-01-01", e.laToken(la1), "")
		require.Equal(t, http.StatusOK, feed.Code, feed.Body.String())
		events := feed.entries("match")
		require.Len(t, events, 1)
		var found []string
		for _, en := range jpath[[]any](t, events[0], "entity") {
			what, _ := jpath[map[string]any](t, en)["what"].(map[string]any)
			id, _ := what["identifier"].(map[string]any)
			if id["system"] == "https://fhir.cpis.dev/Id/trace-id" {
				found = append(found, jpath[string](t, id, "value"))
			}
		}
		assert.Equal(t, []string{trace}, found)

		// The AuditEvent with its trace id is valid against the CP-IS profile.
		ev, err := json.Marshal(events[0])
		require.NoError(t, err)
		v := e.do(http.MethodPost, "AuditEvent/$validate", e.laToken(la1), string(ev))
		require.Equal(t, http.StatusOK, v.Code, v.Body.String())
		for _, is := range jpath[[]any](t, v.json(), "issue") {
			assert.Equal(t, "information", jget(t, is, "severity"), v.Body.String())
		}

		// Without a TraceID the AuditEvent names none.
		e.do(http.MethodGet, flagSearch(nhsA), e.namedUser("u2", "Nurse Two", "B0107"), "")
		n := 0
		for _, rec := range e.auditOf(nhsA) {
			if rec.Agent == "user:u2" {
				n++
				assert.NotContains(t, string(rec.Body), "trace-id")
			}
		}
		assert.Equal(t, 1, n)
	})
}

func TestTraceIDChecked(t *testing.T) {
	e := newEnv(t, backends()[0])
	e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
	for _, bad := range []string{strings.Repeat("t", 129), "caf\u00e9", "tab\there"} {
		r := e.do(http.MethodGet, flagSearch(nhsA), e.nurse(), "", "TraceID", bad)
		require.Equal(t, http.StatusBadRequest, r.Code, r.Body.String())
		assert.Equal(t, "INVALID_VALUE", r.code())
		assert.Empty(t, r.Header().Get("TraceID"), "an invalid TraceID is not echoed")
	}
	assert.Empty(t, e.auditOf(nhsA), "a refused read is not served")
	r := e.do(http.MethodGet, flagSearch(nhsA), e.nurse(), "", "TraceID", strings.Repeat("t", 128))
	assert.Equal(t, http.StatusOK, r.Code, r.Body.String())
}

func TestNationalBasePath(t *testing.T) {
	const national = "http://cpis.test/cpis/FHIR/R4"
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, withBase(national))
		send := func(method, path, token, body string) resp {
			t.Helper()
			var rd io.Reader
			if body != "" {
				rd = strings.NewReader(body)
			}
			req := httptest.NewRequest(method, path, rd)
			if body != "" {
				req.Header.Set("Content-Type", "application/fhir+json")
			}
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			w := e.raw(req)
			if w.Body.Len() > 0 && path != "/healthz" {
				e.requireValidR4(w.Body.Bytes())
			}
			return resp{ResponseRecorder: w, t: t}
		}
		r := send(http.MethodGet, "/cpis/FHIR/R4/metadata", "", "")
		require.Equal(t, http.StatusOK, r.Code)
		assert.Equal(t, national+"/metadata", r.json()["url"])

		r = send(http.MethodPut, "/cpis/FHIR/R4/EpisodeOfCare/n1", e.laToken(la1), planJSON(planSpec{id: "n1", nhs: nhsA, la: la1}))
		require.Equal(t, http.StatusCreated, r.Code, r.Body.String())
		assert.Equal(t, national+"/EpisodeOfCare/n1/_history/1", r.Header().Get("Location"))

		r = send(http.MethodGet, "/cpis/FHIR/R4/"+flagSearch(nhsA), e.nurse(), "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		assert.Equal(t, 1, r.total())
		assert.True(t, strings.HasPrefix(r.link("self"), national+"/Flag?"), r.link("self"))
		for _, en := range jpath[[]any](t, r.json(), "entry") {
			assert.True(t, strings.HasPrefix(jpath[string](t, en, "fullUrl"), national+"/"))
		}

		r = send(http.MethodGet, "/FHIR/R4/metadata", "", "")
		assert.Equal(t, http.StatusNotFound, r.Code)
		assert.Contains(t, r.Body.String(), "the FHIR base is /cpis/FHIR/R4")
		assert.Equal(t, http.StatusOK, send(http.MethodGet, "/healthz", "", "").Code)
	})

	t.Run("bad-base-paths-refused", func(t *testing.T) {
		for _, u := range []string{"http://cpis.test", "http://cpis.test/", "http://cpis.test/FHIR/:type", "http://cpis.test/a//b", "http://cpis.test/FHIR/*x"} {
			_, err := handlers.BasePath(u)
			assert.Error(t, err, u)
		}
		p, err := handlers.BasePath("https://host.example/cpis/FHIR/R4/")
		require.NoError(t, err)
		assert.Equal(t, "/cpis/FHIR/R4", p)
	})
}

func TestRequestDeadlineAnswers503(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, func(d *handlers.Deps) { d.RequestTimeout = time.Nanosecond })
		r := e.do(http.MethodGet, flagSearch(nhsA), e.nurse(), "")
		require.Equal(t, http.StatusServiceUnavailable, r.Code, r.Body.String())
		assert.Equal(t, "SERVICE_UNAVAILABLE", r.code())
		assert.Empty(t, e.auditOf(nhsA))
	})
}
