package handlers

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"cpis/store"
)

// Conditional reads (If-None-Match, If-Modified-Since → 304) and HEAD.
//
// Both answer only after the registry has read the record, which is after
// its AuditEvent is durable: a 304 or a HEAD on a record about a patient
// tells the caller the record exists (and that it has not changed), so it
// is an access like the GET, audited the same way, and it fails closed the
// same way (503 if the audit cannot be written).

// notModified reports whether a conditional read of r may answer 304:
// If-None-Match names its version (or is *), or, without If-None-Match,
// If-Modified-Since is at or after its last update (RFC 9110 13.2.2).
// A record whose shown body can change while its version does not is never
// 304: a derived Flag after its plan's end (it turns inactive as it is
// shown), and a CareTeam (rendered with its local authority's current
// numbers).
func (s *Server) notModified(c *gin.Context, r store.Record) bool {
	if r.Type == "CareTeam" || !r.Ends.IsZero() && !s.now().Before(r.Ends) {
		return false
	}
	if inm := c.Request.Header.Values("If-None-Match"); len(inm) > 0 {
		return etagListMatches(inm, etag(r.Version))
	}
	ims := c.GetHeader("If-Modified-Since")
	if ims == "" {
		return false
	}
	t, err := http.ParseTime(ims)
	if err != nil {
		return false // an invalid date is ignored (RFC 9110 13.1.3)
	}
	return !r.Updated.Truncate(time.Second).After(t)
}

// etagListMatches reports whether an If-None-Match list names the ETag, by
// weak comparison (the version number, W/ or not), or is *.
func etagListMatches(values []string, tag string) bool {
	want := strings.TrimPrefix(tag, "W/")
	for _, v := range values {
		for _, t := range strings.Split(v, ",") {
			t = strings.TrimSpace(t)
			if t == "*" || strings.TrimPrefix(t, "W/") == want {
				return true
			}
		}
	}
	return false
}

// answerNotModified answers 304 with the record's ETag and Last-Modified,
// and no body.
func answerNotModified(c *gin.Context, r store.Record) {
	versionHeaders(c, r)
	c.Status(http.StatusNotModified)
}

// headOnly drops the body of every answer to a HEAD request (errors too):
// a HEAD route runs the GET route's handlers, with the same checks, the
// same audited registry read and the same status and headers, and only the
// body's length is sent (Content-Length).
func headOnly(c *gin.Context) {
	if c.Request.Method == http.MethodHead {
		c.Writer = &headWriter{ResponseWriter: c.Writer}
	}
	c.Next()
}

// headWriter drops the body of a HEAD answer.
type headWriter struct {
	gin.ResponseWriter
	n int
}

func (w *headWriter) Write(b []byte) (int, error) {
	if !w.Written() {
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeaderNow()
	}
	w.n += len(b)
	return len(b), nil
}

func (w *headWriter) WriteString(s string) (int, error) { return w.Write([]byte(s)) }

// headRoutes registers each GET route for HEAD too.
type headRoutes struct{ *gin.RouterGroup }

// GET registers the route for GET and HEAD.
func (g headRoutes) GET(path string, h ...gin.HandlerFunc) {
	g.RouterGroup.HEAD(path, h...)
	g.RouterGroup.GET(path, h...)
}

// Group is a sub-group that also registers HEAD with each GET.
func (g headRoutes) Group(path string, h ...gin.HandlerFunc) headRoutes {
	return headRoutes{g.RouterGroup.Group(path, h...)}
}
