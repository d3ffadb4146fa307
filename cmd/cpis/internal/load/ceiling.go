package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// CeilingPath is the bare gin route's path.
const CeilingPath = "/ceiling"

// ceilingBody is the fixed answer: 310 bytes of JSON, about the size of a
// search answer with no match.
var ceilingBody = func() []byte {
	const head, tail = `{"resourceType":"OperationOutcome","id":"ceiling","issue":[{"severity":"information","code":"informational","diagnostics":"`, `"}]}`
	return []byte(head + strings.Repeat("x", 310-len(head)-len(tail)) + tail)
}()

// CeilingHandler is gin.New() with no middleware and one route answering
// the fixed JSON: the limit of HTTP through this stack on the machine.
func CeilingHandler() http.Handler {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.GET(CeilingPath, func(c *gin.Context) { c.Data(http.StatusOK, "application/json", ceilingBody) })
	return e
}

// ServeCeiling serves the ceiling route on addr until ctx is done.
func ServeCeiling(ctx context.Context, addr string, out io.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: CeilingHandler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintln(out, "serving the bare gin ceiling on", ln.Addr())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	if err := srv.Close(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
