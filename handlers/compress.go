package handlers

import (
	"compress/gzip"
	"io"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/klauspost/compress/gzhttp"

	"cpis/fhir"
)

// compressMinSize is the smallest answer that is gzipped: below it the
// saving does not pay for the work.
const compressMinSize = 1024

// compressed gzips answers of compressMinSize bytes or more for clients that
// send Accept-Encoding: gzip (with klauspost/compress's gzhttp, which reads
// q-values, adds Vary: Accept-Encoding and leaves HEAD, 204 and 304 alone).
// The ETags stay as they are: they are weak, and a weak validator holds for
// every encoding of the same content. gin-contrib/gzip v1.2.3 does not fit:
// it compresses every answer however small, and reads "gzip;q=0" as yes.
func compressed(h http.Handler) (http.Handler, error) {
	wrap, err := gzhttp.NewWrapper(gzhttp.MinSize(compressMinSize), gzhttp.EnableZstd(false))
	if err != nil {
		return nil, err
	}
	return wrap(h), nil
}

// decodeBody accepts request bodies sent with Content-Encoding: gzip by
// putting a gzip reader in front of the body, so the size limits the
// handlers apply (413 beyond them) count the decompressed bytes: a
// compression bomb is cut off at the limit, never held in memory. The
// compressed bytes are bounded too. Another content coding is 415.
func (s *Server) decodeBody(c *gin.Context) {
	r := c.Request
	enc := strings.ToLower(strings.TrimSpace(strings.Join(r.Header.Values("Content-Encoding"), ",")))
	if enc == "" || r.Body == nil || r.Body == http.NoBody {
		c.Next()
		return
	}
	switch enc {
	case "identity":
	case "gzip", "x-gzip":
		raw := &limitedBody{r: r.Body, limit: s.Limits.MaxBundleBytes}
		zr, err := gzip.NewReader(raw)
		if err != nil {
			s.fail(c, fhir.Wrap(fhir.KindInvalid, err, "The request body is not gzip data, but Content-Encoding says gzip"))
			c.Abort()
			return
		}
		r.Body = &gzipBody{Reader: zr, raw: r.Body}
		r.ContentLength = -1
		r.Header.Del("Content-Length")
	default:
		s.fail(c, fhir.Errorf(fhir.KindUnsupportedMedia, "Request bodies may be sent plain or with Content-Encoding: gzip, not %s", clip(enc)))
		c.Abort()
		return
	}
	r.Header.Del("Content-Encoding")
	c.Next()
}

// gzipBody is a decompressed request body; closing it closes the original.
type gzipBody struct {
	*gzip.Reader
	raw io.ReadCloser
}

func (b *gzipBody) Close() error {
	b.Reader.Close()
	return b.raw.Close()
}

// limitedBody bounds the compressed bytes of a request body, failing as
// http.MaxBytesReader does, so the handlers answer 413.
type limitedBody struct {
	r     io.Reader
	limit int64
	read  int64
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.read > l.limit {
		return 0, &http.MaxBytesError{Limit: l.limit}
	}
	if max := l.limit - l.read + 1; int64(len(p)) > max {
		p = p[:max]
	}
	n, err := l.r.Read(p)
	l.read += int64(n)
	if l.read > l.limit {
		return n - int(l.read-l.limit), &http.MaxBytesError{Limit: l.limit}
	}
	return n, err
}
