package handlers

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"cpis/fhir"
	"cpis/store"
)

const contentType = fhir.MIME + "; charset=utf-8"

// writeJSON writes a FHIR JSON body, indented when the client asked for
// _pretty=true.
func (s *Server) writeJSON(c *gin.Context, status int, body []byte) {
	if c.Query("_pretty") == "true" {
		var buf bytes.Buffer
		if json.Indent(&buf, body, "", "  ") == nil {
			body = buf.Bytes()
		}
	}
	c.Data(status, contentType, body)
}

// etag is the weak ETag of a version.
func etag(version int64) string { return `W/"` + strconv.FormatInt(version, 10) + `"` }

func httpDate(t time.Time) string { return t.UTC().Format(http.TimeFormat) }

// versionHeaders sets ETag and Last-Modified for a record.
func versionHeaders(c *gin.Context, r store.Record) {
	c.Header("ETag", etag(r.Version))
	c.Header("Last-Modified", httpDate(r.Updated))
}

// writeRecord serves a stored record's body as it was stored: no decoding.
func (s *Server) writeRecord(c *gin.Context, status int, r store.Record, body []byte) {
	versionHeaders(c, r)
	s.writeJSON(c, status, body)
}

// location is the versioned URL of a record.
func (s *Server) location(r store.Record) string {
	return s.BaseURL + "/" + r.Type + "/" + r.ID + "/_history/" + strconv.FormatInt(r.Version, 10)
}

// fullURL is the unversioned URL of a resource.
func (s *Server) fullURL(typ, id string) string { return s.BaseURL + "/" + typ + "/" + id }

// writeBundle encodes a bundle, its entries' resources as the request's
// _summary or _elements ask.
func (s *Server) writeBundle(c *gin.Context, b *fhir.Bundle) {
	subsetEntries(c, b)
	s.writeJSON(c, http.StatusOK, b.AppendJSON(nil))
}
