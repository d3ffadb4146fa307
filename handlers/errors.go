package handlers

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"

	"cpis/auth"
	"cpis/fhir"
	"cpis/store"
)

// StatusClientClosedRequest is the status recorded (in the access log and
// the metrics) for a request whose client went away before the answer: the
// client's doing, not a server error (nginx's 499).
const StatusClientClosedRequest = 499

// fail is the one place an error becomes a response: an OperationOutcome
// with the contract's code. Clients never see a Go error string; 5xx
// answers name only the request id and the log has the cause.
func (s *Server) fail(c *gin.Context, err error) {
	fe := s.outcome(c, err)
	if fe.Status == http.StatusUnauthorized {
		c.Header("WWW-Authenticate", `Bearer realm="cpis", error="invalid_token"`)
	}
	s.writeJSON(c, fe.Status, fhir.Outcome(fe.Issues).JSON())
}

// outcome is the client's view of an error, for a response or for one entry
// of a batch-response: the mapped *fhir.Error. A 5xx is logged here, with
// its cause, since the client sees only the request id.
func (s *Server) outcome(c *gin.Context, err error) *fhir.Error {
	fe := s.asFHIR(c, err)
	if fe.Status == StatusClientClosedRequest {
		s.Log.Info("the client went away before the answer", slog.String("request_id", requestIDOf(c)), slog.Int("status", fe.Status))
	}
	if fe.Status >= 500 {
		s.Log.Error("request failed", slog.String("request_id", requestIDOf(c)), slog.Int("status", fe.Status), slog.String("error", err.Error()))
	}
	return fe
}

// conflict is a 409: the request cannot apply to the resource as it is
// now, though the client pinned no version.
func conflict(format string, args ...any) *fhir.Error {
	fe := fhir.Errorf(fhir.CodeInvalidValue, format, args...).WithStatus(http.StatusConflict)
	fe.Issues[0].Type = "conflict"
	return fe
}

// asFHIR maps any error to a *fhir.Error: the one table from sentinel
// errors to HTTP statuses and codes.
func (s *Server) asFHIR(c *gin.Context, err error) *fhir.Error {
	var fe *fhir.Error
	var te *auth.TokenError
	var ue *store.UniqueError
	rid := requestIDOf(c)
	switch {
	case errors.As(err, &fe):
		return fe
	case errors.Is(err, auth.ErrKeysUnavailable):
		return fhir.Wrap(fhir.CodeUnavailable, err, "The token signing keys cannot be fetched; try again shortly (request %s)", rid)
	case errors.As(err, &te):
		return fhir.Wrap(fhir.CodeUnauthorised, err, "Unauthorised: %s", te.Reason)
	case errors.Is(err, store.ErrNotFound):
		return fhir.Wrap(fhir.CodeNotFound, err, "Resource not found")
	case errors.As(err, &ue):
		return fhir.Wrap(fhir.CodePreconditionFailed, err, "The identifier %s already identifies another %s", keyToken(ue.Key), ue.Type)
	case errors.Is(err, store.ErrVersionConflict):
		// A write that kept losing races to others. 412 is only for a
		// version the client pinned with If-Match (the writes say so).
		fe := conflict("The resource was changed by other requests at the same time; send the request again")
		fe.Err = err
		return fe
	case errors.Is(err, store.ErrInvalidCursor):
		return fhir.Wrap(fhir.CodeInvalidSearchData, err, "The paging cursor is not valid; start the search again")
	case errors.Is(err, context.Canceled) && c.Request.Context().Err() != nil:
		// The client closed the connection: its doing, not an outage.
		return fhir.Wrap(fhir.CodeUnavailable, err, "The request was cancelled by the client (request %s)", rid).WithStatus(StatusClientClosedRequest)
	case errors.Is(err, store.ErrTransactionsUnsupported):
		return fhir.Wrap(fhir.CodeMethodNotAllowed, err, "This server's database cannot apply several resources atomically, so transaction Bundles are refused; send a batch Bundle instead").WithStatus(http.StatusNotImplemented)
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return fhir.Wrap(fhir.CodeUnavailable, err, "The service is unavailable; try again shortly (request %s)", rid)
	}
	return fhir.Wrap(fhir.CodeInternal, err, "Internal server error (request %s)", rid)
}
