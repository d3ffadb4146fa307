package handlers

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"

	"cpis/fhir"
)

// CORS: browser apps on the origins named in Deps.CORSOrigins may call the
// API. Off (no origins) by default. Written here rather than with
// gin-contrib/cors v1.7.6, which does not fit: it answers a request from an
// origin it does not allow with an empty 403 (not an OperationOutcome, and
// also for clients that are not browsers), it replaces the response's Vary
// header (dropping Vary: Accept-Encoding from a compressed answer), and it
// shares its header value slices between requests, so a later Header().Add
// can write into another request's headers.

// corsAllowHeaders are the request headers a browser app may send.
var corsAllowHeaders = strings.Join([]string{
	"Accept", "Authorization", "Content-Type", "Content-Encoding", "Prefer",
	"If-Match", "If-None-Match", "If-None-Exist", "If-Modified-Since",
	"TraceID", "X-Request-ID", "X-Correlation-ID", "IsUnscheduledAccessEvent",
}, ", ")

// corsExposeHeaders are the response headers a browser app may read.
var corsExposeHeaders = strings.Join([]string{
	"ETag", "Location", "Last-Modified", "Content-Location", "X-Request-ID", "X-Correlation-ID", "TraceID", "WWW-Authenticate",
}, ", ")

// corsAllowMethods are the methods the API serves.
const corsAllowMethods = "GET, HEAD, POST, PUT, PATCH, DELETE"

// corsMaxAge is how long (seconds) a browser may keep a preflight's answer.
const corsMaxAge = "600"

// CORSOrigin checks one configured browser origin and returns it as
// browsers send it: scheme://host[:port], lower case, without a default
// port. "*" is refused: this service carries children's records, so each
// origin that may call it from a browser is named.
func CORSOrigin(o string) (string, error) {
	o = strings.TrimSpace(o)
	if o == "*" {
		return "", errors.New(`"*" is not allowed: name each browser origin that may call this service, such as https://app.example.nhs.uk`)
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || strings.Contains(u.Host, "*") {
		return "", fmt.Errorf("%q is not an origin: write scheme://host[:port], such as https://app.example.nhs.uk", o)
	}
	scheme, host, port := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname()), u.Port()
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	return scheme + "://" + host, nil
}

// cors answers preflights from allowed origins (204, without a token) and
// marks other answers to them readable. A preflight from another origin is
// 403 without CORS headers; an ordinary request from another origin is
// served without them, so the browser keeps the answer from the page.
func (s *Server) cors(c *gin.Context) {
	h := c.Writer.Header()
	h.Add("Vary", "Origin")
	origin := c.GetHeader("Origin")
	if origin == "" {
		c.Next()
		return
	}
	allowed := s.corsOrigins[strings.ToLower(origin)]
	preflight := c.Request.Method == http.MethodOptions && c.GetHeader("Access-Control-Request-Method") != ""
	if preflight {
		h.Add("Vary", "Access-Control-Request-Method")
		h.Add("Vary", "Access-Control-Request-Headers")
		if !allowed {
			s.fail(c, fhir.Errorf(fhir.KindForbidden, "Access has been denied to process this request: this origin may not call the API from a browser"))
			c.Abort()
			return
		}
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Methods", corsAllowMethods)
		h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
		h.Set("Access-Control-Max-Age", corsMaxAge)
		c.AbortWithStatus(http.StatusNoContent)
		return
	}
	if allowed {
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
	}
	c.Next()
}
