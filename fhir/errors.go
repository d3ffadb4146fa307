package fhir

import (
	"fmt"
	"net/http"
	"strings"
)

// Code is an NHS-style error code carried in OperationOutcome.issue.details.
type Code string

// The error codes of the public contract (section 7).
const (
	CodeInvalidSearchData  Code = "INVALID_SEARCH_DATA"
	CodeInvalidValue       Code = "INVALID_VALUE"
	CodeValidationError    Code = "VALIDATION_ERROR"
	CodeAccessDenied       Code = "ACCESS_DENIED"
	CodeUnauthorised       Code = "UNAUTHORISED"
	CodeNotFound           Code = "RESOURCE_NOT_FOUND"
	CodePreconditionFailed Code = "PRECONDITION_FAILED"
	CodeMethodNotAllowed   Code = "METHOD_NOT_ALLOWED"
	CodeUnavailable        Code = "SERVICE_UNAVAILABLE"
	CodeInternal           Code = "INTERNAL_SERVER_ERROR"
)

// ErrorCodeSystem is the code system of Code values, as the NHS Spine uses it.
const ErrorCodeSystem = "https://fhir.nhs.uk/R4/CodeSystem/Spine-ErrorOrWarningCode"

// codeInfo is the one table from a Code to its HTTP status, FHIR issue type
// and display text.
var codeInfo = map[Code]struct {
	status  int
	issue   string
	display string
}{
	CodeInvalidSearchData:  {http.StatusBadRequest, "invalid", "Invalid search data"},
	CodeInvalidValue:       {http.StatusBadRequest, "invalid", "Invalid value"},
	CodeValidationError:    {http.StatusUnprocessableEntity, "processing", "Validation error"},
	CodeAccessDenied:       {http.StatusForbidden, "forbidden", "Access denied"},
	CodeUnauthorised:       {http.StatusUnauthorized, "login", "Unauthorised"},
	CodeNotFound:           {http.StatusNotFound, "not-found", "Resource not found"},
	CodePreconditionFailed: {http.StatusPreconditionFailed, "conflict", "Precondition failed"},
	CodeMethodNotAllowed:   {http.StatusMethodNotAllowed, "not-supported", "Method not allowed"},
	CodeUnavailable:        {http.StatusServiceUnavailable, "transient", "Service unavailable"},
	CodeInternal:           {http.StatusInternalServerError, "exception", "Internal server error"},
}

// Status is the HTTP status a Code maps to.
func (c Code) Status() int {
	if i, ok := codeInfo[c]; ok {
		return i.status
	}
	return http.StatusInternalServerError
}

// IssueType is the FHIR issue-type code a Code maps to.
func (c Code) IssueType() string {
	if i, ok := codeInfo[c]; ok {
		return i.issue
	}
	return "exception"
}

// Display is the human-readable name of a Code.
func (c Code) Display() string {
	if i, ok := codeInfo[c]; ok {
		return i.display
	}
	return string(c)
}

// Issue is one problem found in a request.
type Issue struct {
	Severity    string // error, warning or information; empty means error
	Type        string // FHIR issue type; empty means the Code's default
	Code        Code
	Diagnostics string
	Expression  []string
	More        int // > 0: this issue stands for More problems not shown (see Collector)
}

// Error is the one error type that reaches clients: an HTTP status with one or
// more issues. Err, if set, is the internal cause: logged, never shown.
type Error struct {
	Status int
	Issues []Issue
	Err    error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "fhir: %d", e.Status)
	for _, is := range e.Issues {
		fmt.Fprintf(&b, " %s", is.Code)
		if len(is.Expression) > 0 {
			fmt.Fprintf(&b, "@%s", strings.Join(is.Expression, ","))
		}
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an Error with one issue of the given code; the status comes
// from the code.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Status: code.Status(), Issues: []Issue{{Code: code, Diagnostics: fmt.Sprintf(format, args...)}}}
}

// At returns an Error with one issue of the given code about the element at
// expression.
func At(code Code, expression, format string, args ...any) *Error {
	e := Errorf(code, format, args...)
	e.Issues[0].Expression = []string{expression}
	return e
}

// Wrap returns an Error with one issue of the given code whose internal cause
// is err. The cause is never shown to the client.
func Wrap(code Code, err error, format string, args ...any) *Error {
	e := Errorf(code, format, args...)
	e.Err = err
	return e
}

// Invalid gathers issues found in a request body into one Error. Structural
// problems (INVALID_VALUE) make it a 400; otherwise rule violations make it a
// 422. It returns nil if there are no error-severity issues.
func Invalid(issues []Issue) *Error {
	status := 0
	for _, is := range issues {
		if is.Severity != "" && is.Severity != "error" && is.Severity != "fatal" {
			continue
		}
		if s := is.Code.Status(); status == 0 || s < status {
			status = s
		}
	}
	if status == 0 {
		return nil
	}
	return &Error{Status: status, Issues: issues}
}

// WithStatus sets the HTTP status, for the statuses that share a code with
// another (406, 410, 413 and 415 carry INVALID_VALUE or RESOURCE_NOT_FOUND).
func (e *Error) WithStatus(status int) *Error {
	e.Status = status
	return e
}
