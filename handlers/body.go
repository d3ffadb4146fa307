package handlers

import (
	"errors"
	"net"
	"os"

	"cpis/fhir"
)

// bodyTimedOut reports whether reading a request body failed because the
// client sent it too slowly: the http.Server's read timeout passed.
func bodyTimedOut(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// slowBody is the answer to a body that arrived too slowly: 503 with an
// OperationOutcome, like any request too slow to finish (not a 400: the
// body may have been fine).
func slowBody(err error) error {
	return fhir.Wrap(fhir.KindUnavailable, err, "The request body arrived too slowly and the server's read timeout passed; send it again")
}
