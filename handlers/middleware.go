package handlers

import (
	"context"
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

const (
	requestIDKey = "cpis.request-id"
	traceIDKey   = "cpis.trace-id"
)

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
// and a valid TraceID (nationalHeaders refuses an invalid one).
func (s *Server) requestID(c *gin.Context) {
	id := headerValue(c.GetHeader("X-Request-ID"))
	if id == "" {
		id = newUUID()
	}
	c.Set(requestIDKey, id)
	h := c.Writer.Header()
	h.Set("X-Request-ID", id)
	if v := headerValue(c.GetHeader("X-Correlation-ID")); v != "" {
		h.Set("X-Correlation-ID", v)
	}
	if v := c.Request.Header.Values("TraceID"); len(v) == 1 && validTraceID(v[0]) {
		h.Set("TraceID", v[0])
	}
	c.Next()
}

func requestIDOf(c *gin.Context) string { return c.GetString(requestIDKey) }

// noStore marks every answer under the FHIR base Cache-Control: no-store,
// errors included, so no browser, proxy or shared cache keeps a child's
// record or a paging link. Only the CapabilityStatement and the CP-IS
// conformance resources (the same for every caller) may be cached.
func (s *Server) noStore(c *gin.Context) {
	if p := c.Request.URL.Path; (p == s.basePath || strings.HasPrefix(p, s.basePath+"/")) && !s.publicRoute(c.FullPath()) {
		c.Header("Cache-Control", "no-store")
	}
	c.Next()
}

// publicRoute reports whether a route serves only what is the same for
// every caller: the CapabilityStatement and the conformance resources.
func (s *Server) publicRoute(route string) bool {
	r, ok := strings.CutPrefix(route, s.basePath+"/")
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

// traceIDOf is the TraceID the client sent ("" if none), for the AuditEvent.
func traceIDOf(c *gin.Context) string { return c.GetString(traceIDKey) }

// maxTraceID bounds a TraceID header.
const maxTraceID = 128

// validTraceID reports whether v is a TraceID this server accepts: 1 to 128
// printable ASCII characters.
func validTraceID(v string) bool {
	if v == "" || len(v) > maxTraceID {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return false
		}
	}
	return true
}

// nationalHeaders checks the headers of the national CP-IS API on every
// route: TraceID is kept for the AuditEvent (400 if it is not 1 to 128
// printable ASCII characters), and IsUnscheduledAccessEvent must be true or
// false when present (400 invalid PRECONDITION_FAILED otherwise, as the
// national error table has it). The read handlers act on its value.
func (s *Server) nationalHeaders(c *gin.Context) {
	h := c.Request.Header
	if v, sent := h[http.CanonicalHeaderKey("TraceID")]; sent {
		switch {
		case len(v) != 1:
			s.failHeader(c, fhir.KindInvalid, "TraceID", "Send one TraceID header")
			return
		case v[0] == "":
		case !validTraceID(v[0]):
			s.failHeader(c, fhir.KindInvalid, "TraceID", "TraceID must be 1 to %d printable ASCII characters", maxTraceID)
			return
		default:
			c.Set(traceIDKey, v[0])
		}
	}
	if v, sent := h[http.CanonicalHeaderKey("IsUnscheduledAccessEvent")]; sent {
		if len(v) != 1 || !(strings.EqualFold(v[0], "true") || strings.EqualFold(v[0], "false")) {
			s.failHeader(c, fhir.KindInvalidHeader, "IsUnscheduledAccessEvent",
				"Missing or invalid header parameter: IsUnscheduledAccessEvent must be true (an unscheduled, audited access) or false (a scheduled, silent one)")
			return
		}
	}
	c.Next()
}

// failHeader answers 400 for a bad request header, with issue type invalid
// whatever the details code.
func (s *Server) failHeader(c *gin.Context, kind fhir.Kind, header, format string, args ...any) {
	s.fail(c, &fhir.Error{Kind: kind, Issues: []fhir.Issue{{
		Kind: kind, Type: "invalid", Diagnostics: fmt.Sprintf(format, args...), Expression: []string{"http.header." + header},
	}}})
	c.Abort()
}

// headerLimit answers 431 with an OperationOutcome when the request line and
// headers together exceed Limits.MaxHeaderBytes. The http.Server's own
// limit is set higher (ServerMaxHeaderBytes), so that only a request beyond
// it gets Go's plain-text 431.
func (s *Server) headerLimit(c *gin.Context) {
	r := c.Request
	n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + 4 + len("Host: ") + len(r.Host) + 2
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	if n > s.Limits.MaxHeaderBytes {
		s.fail(c, fhir.Errorf(fhir.KindHeaderTooLarge, "The request's headers are larger than this server accepts (%d bytes with the request line)", s.Limits.MaxHeaderBytes))
		c.Abort()
		return
	}
	c.Next()
}

// deadline bounds the time a request may take (Deps.RequestTimeout): the
// request's context ends then, so a store call or an audit write still
// running fails and the request is answered 503 SERVICE_UNAVAILABLE with an
// OperationOutcome, before the server's write timeout would close the
// connection without an answer.
func (s *Server) deadline(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.RequestTimeout)
	defer cancel()
	c.Request = c.Request.WithContext(ctx)
	c.Next()
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
// (406 otherwise) and request bodies of POST and PUT must be JSON (415
// otherwise). PATCH bodies are JSON Patch documents: the patch handler
// checks their type.
func (s *Server) negotiate(c *gin.Context) {
	if f := c.Query("_format"); f != "" && !jsonFormat(f) {
		s.fail(c, fhir.At(fhir.KindNotAcceptable, "_format", "This server speaks FHIR JSON only (application/fhir+json); _format %q is not supported", clip(f)))
		c.Abort()
		return
	}
	if a := c.GetHeader("Accept"); a != "" && !acceptsJSON(a) {
		s.fail(c, fhir.Errorf(fhir.KindNotAcceptable, "This server speaks FHIR JSON only: the Accept header must allow application/fhir+json"))
		c.Abort()
		return
	}
	if c.Request.Method == http.MethodPost || c.Request.Method == http.MethodPut {
		ct := c.GetHeader("Content-Type")
		mt, _, err := mime.ParseMediaType(ct)
		ok := err == nil && (mt == fhir.MIME || mt == "application/json")
		if !ok && mt == "application/x-www-form-urlencoded" && strings.HasSuffix(c.Request.URL.Path, "/_search") {
			ok = true
		}
		if !ok {
			s.fail(c, fhir.Errorf(fhir.KindUnsupportedMedia, "Request bodies must be application/fhir+json"))
			c.Abort()
			return
		}
	}
	c.Next()
}

// jsonFormat reports whether a _format value asks for FHIR JSON: json,
// application/json, application/fhir+json or application/json+fhir, with
// parameters such as fhirVersion=4.0 and charset=utf-8. A "+" typed raw in a
// URL arrives as a space ("application/fhir json"), and is read as "+".
func jsonFormat(f string) bool {
	f = strings.TrimSpace(f)
	typ, params, _ := strings.Cut(f, ";")
	typ = strings.ReplaceAll(strings.TrimSpace(typ), " ", "+")
	if strings.EqualFold(typ, "json") {
		typ = "application/json"
	}
	if params != "" {
		typ += ";" + params
	}
	return jsonMediaType(typ)
}

// jsonMediaType reports whether a media type with its parameters is FHIR R4
// JSON: a fhirVersion other than 4.0 is another FHIR's JSON.
func jsonMediaType(v string) bool {
	mt, params, err := mime.ParseMediaType(v)
	if err != nil {
		return false
	}
	switch mt {
	case "application/json", fhir.MIME, "application/json+fhir":
	default:
		return false
	}
	if fv, ok := params["fhirversion"]; ok && fv != "4.0" && fv != fhir.Version {
		return false
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return false
	}
	return true
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
