package handlers

import (
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"cpis/fhir"
)

const requestIDKey = "cpis.request-id"

func newUUID() string { return uuid.NewString() }

// headerValue keeps a client-sent header value only if it is short and plain.
func headerValue(v string) string {
	if v == "" || len(v) > 200 {
		return ""
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x21 || c > 0x7e {
			return ""
		}
	}
	return v
}

// requestID echoes X-Request-ID (or makes one), and echoes X-Correlation-ID
// and TraceID.
func (s *Server) requestID(c *gin.Context) {
	id := headerValue(c.GetHeader("X-Request-ID"))
	if id == "" {
		id = newUUID()
	}
	c.Set(requestIDKey, id)
	h := c.Writer.Header()
	h.Set("X-Request-ID", id)
	for _, name := range []string{"X-Correlation-ID", "TraceID"} {
		if v := headerValue(c.GetHeader(name)); v != "" {
			h.Set(name, v)
		}
	}
	c.Next()
}

func requestIDOf(c *gin.Context) string { return c.GetString(requestIDKey) }

// fhirBase is the path the API is served under.
const fhirBase = "/FHIR/R4"

// noStore marks every answer under the FHIR base Cache-Control: no-store,
// errors included, so no browser, proxy or shared cache keeps a child's
// record or a paging link. Only the CapabilityStatement and the CP-IS
// conformance resources (the same for every caller) may be cached.
func (s *Server) noStore(c *gin.Context) {
	if p := c.Request.URL.Path; (p == fhirBase || strings.HasPrefix(p, fhirBase+"/")) && !publicRoute(c.FullPath()) {
		c.Header("Cache-Control", "no-store")
	}
	c.Next()
}

// publicRoute reports whether a route serves only what is the same for
// every caller: the CapabilityStatement and the conformance resources.
func publicRoute(route string) bool {
	r, ok := strings.CutPrefix(route, fhirBase+"/")
	if !ok {
		return false
	}
	typ, rest, _ := strings.Cut(r, "/")
	switch typ {
	case "metadata":
		return rest == ""
	case "StructureDefinition", "CodeSystem", "ValueSet":
		return rest == "" || rest == ":id"
	}
	return false
}

// accessLog writes one line per request: method, route template, status,
// latency and request id. Never the path's values, the query or a body.
func (s *Server) accessLog(c *gin.Context) {
	start := time.Now()
	c.Next()
	d := time.Since(start)
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	status := c.Writer.Status()
	method := methodName(c.Request.Method)
	if s.Metrics != nil {
		s.Metrics.Request(route, method, status, d)
	}
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	s.Log.LogAttrs(c.Request.Context(), level, "request",
		slog.String("method", method),
		slog.String("route", route),
		slog.Int("status", status),
		slog.Float64("ms", float64(d.Microseconds())/1000),
		slog.String("request_id", requestIDOf(c)),
	)
}

// methodName is the request method as logged and counted: a client may
// send any token as the method, so one the server does not know is OTHER,
// which keeps the metrics' label values few and client text out of the log.
func methodName(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "OTHER"
}

// recovery turns a panic into a 500 that names only the request id. The log
// gets the stack, never the panic's value (it may hold request data).
func (s *Server) recovery(c *gin.Context) {
	defer func() {
		if r := recover(); r != nil {
			if r == http.ErrAbortHandler {
				panic(r)
			}
			s.Log.Error("panic", slog.String("request_id", requestIDOf(c)), slog.String("type", fmt.Sprintf("%T", r)),
				slog.String("stack", string(debug.Stack())))
			if !c.Writer.Written() {
				s.fail(c, fmt.Errorf("panic of type %T", r))
			}
			c.Abort()
		}
	}()
	c.Next()
}

// negotiate enforces JSON only: _format and Accept must allow FHIR JSON
// (406 otherwise) and request bodies must be JSON (415 otherwise).
func (s *Server) negotiate(c *gin.Context) {
	if f := c.Query("_format"); f != "" && !jsonFormat(f) {
		s.fail(c, fhir.At(fhir.CodeInvalidValue, "_format", "This server speaks FHIR JSON only (application/fhir+json); _format %q is not supported", clip(f)).WithStatus(http.StatusNotAcceptable))
		c.Abort()
		return
	}
	if a := c.GetHeader("Accept"); a != "" && !acceptsJSON(a) {
		s.fail(c, fhir.Errorf(fhir.CodeInvalidValue, "This server speaks FHIR JSON only: the Accept header must allow application/fhir+json").WithStatus(http.StatusNotAcceptable))
		c.Abort()
		return
	}
	if c.Request.Method == http.MethodPost || c.Request.Method == http.MethodPut || c.Request.Method == http.MethodPatch {
		ct := c.GetHeader("Content-Type")
		mt, _, err := mime.ParseMediaType(ct)
		ok := err == nil && (mt == fhir.MIME || mt == "application/json")
		if !ok && mt == "application/x-www-form-urlencoded" && strings.HasSuffix(c.Request.URL.Path, "/_search") {
			ok = true
		}
		if !ok {
			s.fail(c, fhir.Errorf(fhir.CodeInvalidValue, "Request bodies must be application/fhir+json").WithStatus(http.StatusUnsupportedMediaType))
			c.Abort()
			return
		}
	}
	c.Next()
}

func jsonFormat(f string) bool {
	switch strings.ToLower(strings.TrimSpace(f)) {
	case "json", "application/json", fhir.MIME, "application/json+fhir":
		return true
	}
	mt, _, err := mime.ParseMediaType(f)
	return err == nil && (mt == fhir.MIME || mt == "application/json")
}

// acceptsJSON reports whether an Accept header allows a JSON answer.
func acceptsJSON(a string) bool {
	for _, part := range strings.Split(a, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if q, ok := params["q"]; ok && (q == "0" || q == "0.0" || q == "0.00" || q == "0.000") {
			continue
		}
		switch mt {
		case "*/*", "application/*", "application/json", fhir.MIME, "application/json+fhir":
			return true
		}
	}
	return false
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
