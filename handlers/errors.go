package handlers

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"

	"cpis/auth"
	"cpis/fhir"
)

// StatusClientClosedRequest is the status recorded (in the access log and
// the metrics) for a request whose client went away before the answer: the
// client's doing, not a server error (nginx's 499).
const StatusClientClosedRequest = 499

// kindRow is how one error kind answers: the HTTP status, the FHIR issue
// type, and the NHS error code with its display.
type kindRow struct {
	status    int
	issueType string
	code      string
	display   string
}

// kinds is the one table from an error kind to its answer. Every error a
// client sees passes through it (fail); nothing else sets a status for an
// error.
var kinds = map[fhir.Kind]kindRow{
	fhir.KindInvalid:            {http.StatusBadRequest, "invalid", "INVALID_VALUE", "Invalid value"},
	fhir.KindInvalidSearch:      {http.StatusBadRequest, "invalid", "INVALID_SEARCH_DATA", "Invalid search data"},
	fhir.KindInvalidHeader:      {http.StatusBadRequest, "invalid", "PRECONDITION_FAILED", "Precondition failed"},
	fhir.KindUnauthorised:       {http.StatusUnauthorized, "login", "UNAUTHORISED", "Unauthorised"},
	fhir.KindForbidden:          {http.StatusForbidden, "forbidden", "ACCESS_DENIED", "Access denied"},
	fhir.KindNotFound:           {http.StatusNotFound, "not-found", "RESOURCE_NOT_FOUND", "Resource not found"},
	fhir.KindMethodNotAllowed:   {http.StatusMethodNotAllowed, "not-supported", "METHOD_NOT_ALLOWED", "Method not allowed"},
	fhir.KindNotAcceptable:      {http.StatusNotAcceptable, "invalid", "INVALID_VALUE", "Invalid value"},
	fhir.KindConflict:           {http.StatusConflict, "conflict", "INVALID_VALUE", "Invalid value"},
	fhir.KindGone:               {http.StatusGone, "not-found", "RESOURCE_NOT_FOUND", "Resource not found"},
	fhir.KindPreconditionFailed: {http.StatusPreconditionFailed, "conflict", "PRECONDITION_FAILED", "Precondition failed"},
	fhir.KindTooLarge:           {http.StatusRequestEntityTooLarge, "invalid", "INVALID_VALUE", "Invalid value"},
	fhir.KindUnsupportedMedia:   {http.StatusUnsupportedMediaType, "invalid", "INVALID_VALUE", "Invalid value"},
	fhir.KindUnprocessable:      {http.StatusUnprocessableEntity, "processing", "VALIDATION_ERROR", "Validation error"},
	fhir.KindHeaderTooLarge:     {http.StatusRequestHeaderFieldsTooLarge, "invalid", "INVALID_VALUE", "Invalid value"},
	fhir.KindClientClosed:       {StatusClientClosedRequest, "transient", "SERVICE_UNAVAILABLE", "Service unavailable"},
	fhir.KindInternal:           {http.StatusInternalServerError, "exception", "INTERNAL_SERVER_ERROR", "Internal server error"},
	fhir.KindNotImplemented:     {http.StatusNotImplemented, "not-supported", "METHOD_NOT_ALLOWED", "Method not allowed"},
	fhir.KindUnavailable:        {http.StatusServiceUnavailable, "transient", "SERVICE_UNAVAILABLE", "Service unavailable"},
}

// row is a kind's row; a kind missing from the table is a bug, answered as
// one.
func row(k fhir.Kind) kindRow {
	if r, ok := kinds[k]; ok {
		return r
	}
	return kinds[fhir.KindInternal]
}

// describe gives fhir.Outcome a kind's issue type, code and display.
func describe(k fhir.Kind) (string, string, string) {
	r := row(k)
	return r.issueType, r.code, r.display
}

// outcomeJSON is the OperationOutcome of issues, encoded.
func outcomeJSON(issues []fhir.Issue) []byte { return fhir.Outcome(issues, describe).JSON() }

// fail is the one place an error becomes a response: an OperationOutcome
// with the contract's code. Clients never see a Go error string; 5xx
// answers name only the request id and the log has the cause.
func (s *Server) fail(c *gin.Context, err error) {
	fe := s.outcome(c, err)
	status := row(fe.Kind).status
	if status == http.StatusUnauthorized {
		c.Header("WWW-Authenticate", `Bearer realm="cpis", error="invalid_token"`)
	}
	s.writeJSON(c, status, outcomeJSON(fe.Issues))
}

// outcome is the client's view of an error, for a response or for one entry
// of a batch-response. A 5xx is logged here, with its cause, since the
// client sees only the request id.
func (s *Server) outcome(c *gin.Context, err error) *fhir.Error {
	fe := asFHIR(c, err)
	if fe.Kind == fhir.KindClientClosed {
		s.Log.Info("the client went away before the answer", slog.String("request_id", requestIDOf(c)), slog.Int("status", row(fe.Kind).status))
	}
	if status := row(fe.Kind).status; status >= 500 {
		s.Log.Error("request failed", slog.String("request_id", requestIDOf(c)), slog.Int("status", status), slog.String("error", err.Error()))
	}
	return fe
}

// asFHIR gives any error its kind: a *fhir.Error has one (the registry maps
// the store's sentinel errors); token and context errors get theirs here;
// anything else is a bug.
func asFHIR(c *gin.Context, err error) *fhir.Error {
	var te *auth.TokenError
	rid := requestIDOf(c)
	switch {
	case fhir.As(err) != nil:
		return fhir.As(err)
	case errors.Is(err, auth.ErrKeysUnavailable):
		err = fhir.Wrap(fhir.KindUnavailable, err, "The token signing keys cannot be fetched; try again shortly (request %s)", rid)
	case errors.As(err, &te):
		err = fhir.Wrap(fhir.KindUnauthorised, err, "Unauthorised: %s", te.Reason)
	case errors.Is(err, context.Canceled) && c.Request.Context().Err() != nil:
		// The client closed the connection: its doing, not an outage.
		err = fhir.Wrap(fhir.KindClientClosed, err, "The request was cancelled by the client (request %s)", rid)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		err = fhir.Wrap(fhir.KindUnavailable, err, "The service is unavailable; try again shortly (request %s)", rid)
	default:
		err = fhir.Wrap(fhir.KindInternal, err, "Internal server error (request %s)", rid)
	}
	return fhir.As(err)
}
