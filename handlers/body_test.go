package handlers_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/handlers"
)

// TestSlowBodyAnswers503: a body that arrives more slowly than the
// server's read timeout is answered 503 SERVICE_UNAVAILABLE with an
// OperationOutcome (as any request too slow to finish), not a 400 that
// blames a body that may have been fine; nothing is written. Through a real
// http.Server and a raw connection that stops sending half way.
func TestSlowBodyAnswers503(t *testing.T) {
	e := newEnv(t, backends()[0])
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: e.h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 300 * time.Millisecond, MaxHeaderBytes: handlers.ServerMaxHeaderBytes}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	plan := planJSON(planSpec{id: "slow1", nhs: nhsA, la: la1})
	for _, tc := range []struct{ name, method, path, ctype string }{
		{"put", http.MethodPut, "/FHIR/R4/EpisodeOfCare/slow1", "application/fhir+json"},
		{"bundle", http.MethodPost, "/FHIR/R4", "application/fhir+json"},
		{"search", http.MethodPost, "/FHIR/R4/Flag/_search", "application/x-www-form-urlencoded"},
		{"patch", http.MethodPatch, "/FHIR/R4/EpisodeOfCare/slow1", "application/json-patch+json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", ln.Addr().String())
			require.NoError(t, err)
			defer conn.Close()
			body := plan
			if tc.name == "bundle" {
				body = `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"PUT","url":"EpisodeOfCare/slow1"},"resource":` + plan + `}]}`
			}
			fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: cpis.test\r\nAuthorization: Bearer %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s",
				tc.method, tc.path, e.laToken(la1), tc.ctype, len(body), body[:len(body)/2])
			require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			require.NoError(t, err, "an answer, not a closed connection")
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, string(b))
			assert.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "application/fhir+json"))
			e.requireValidR4(b)
			assert.Contains(t, string(b), "SERVICE_UNAVAILABLE")
		})
	}
	assert.Equal(t, http.StatusNotFound, e.do(http.MethodGet, "EpisodeOfCare/slow1", e.laToken(la1), "").Code, "nothing written")
}
