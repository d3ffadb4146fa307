package fhir

import (
	"errors"
	"fmt"
	"strings"
)

// Kind says what went wrong, in the client's terms. An error carries a kind,
// never an HTTP status: the handlers hold the one table from a kind to its
// status, FHIR issue type, NHS error code and display.
//
// The kinds are declared in the order their statuses rise: when the problems
// of several parts of a request are gathered into one error (every problem
// of a resource, every entry of a transaction), the first kind in this order
// answers for them all (a 400 before a 403 before a 422).
type Kind uint8

// The error kinds. KindNone marks an issue that is not an error (warning,
// information): it carries no error code.
const (
	KindNone               Kind = iota
	KindInvalid                 // the request or a resource is malformed (400)
	KindInvalidSearch           // a search is malformed (400)
	KindInvalidHeader           // a header (If-Match, IsUnscheduledAccessEvent) is malformed (400)
	KindUnauthorised            // no valid token (401)
	KindForbidden               // the caller may not do this (403)
	KindNotFound                // no such resource or endpoint (404)
	KindMethodNotAllowed        // the interaction is not offered here (405)
	KindNotAcceptable           // the client accepts no format this server speaks (406)
	KindConflict                // the write kept losing races with others; send it again (409)
	KindGone                    // the resource was deleted (410)
	KindPreconditionFailed      // If-Match or a condition does not hold (412)
	KindTooLarge                // the body is larger than the server accepts (413)
	KindUnsupportedMedia        // the body is not FHIR JSON (415)
	KindUnprocessable           // a resource breaks a rule of its profile (422)
	KindHeaderTooLarge          // the request line and headers are too large (431)
	KindClientClosed            // the client went away before the answer (499)
	KindInternal                // a bug (500)
	KindNotImplemented          // the database cannot do what was asked (501)
	KindUnavailable             // the store or the key server cannot answer now (503)
	kindCount
)

// Kinds lists every error kind, for the tables that must cover them all.
func Kinds() []Kind {
	out := make([]Kind, 0, kindCount-1)
	for k := KindNone + 1; k < kindCount; k++ {
		out = append(out, k)
	}
	return out
}

var kindNames = [...]string{"none", "invalid", "invalid-search", "invalid-header", "unauthorised", "forbidden",
	"not-found", "method-not-allowed", "not-acceptable", "conflict", "gone", "precondition-failed", "too-large",
	"unsupported-media", "unprocessable", "header-too-large", "client-closed", "internal", "not-implemented", "unavailable"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Issue is one problem found in a request.
type Issue struct {
	Severity    string // error, warning or information; empty means error
	Type        string // FHIR issue type; empty means the kind's
	Kind        Kind   // KindNone for warnings and information without a code
	Diagnostics string
	Expression  []string
	More        int // > 0: this issue stands for More problems not shown (see Collector)
}

// Error is the one error type that reaches clients: a kind with one or more
// issues. Err, if set, is the internal cause: logged, never shown.
type Error struct {
	Kind   Kind
	Issues []Issue
	Err    error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "fhir: %s", e.Kind)
	for _, is := range e.Issues {
		fmt.Fprintf(&b, " %s", is.Kind)
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

// Errorf returns an error of the given kind with one issue.
func Errorf(kind Kind, format string, args ...any) error {
	return newError(kind, "", nil, format, args...)
}

// At returns an error of the given kind with one issue about the element at
// expression.
func At(kind Kind, expression, format string, args ...any) error {
	return newError(kind, expression, nil, format, args...)
}

// Wrap returns an error of the given kind with one issue whose internal
// cause is err. The cause is never shown to the client.
func Wrap(kind Kind, err error, format string, args ...any) error {
	return newError(kind, "", err, format, args...)
}

func newError(kind Kind, expression string, cause error, format string, args ...any) *Error {
	e := &Error{Kind: kind, Err: cause, Issues: []Issue{{Kind: kind, Diagnostics: fmt.Sprintf(format, args...)}}}
	if expression != "" {
		e.Issues[0].Expression = []string{expression}
	}
	return e
}

// As returns err's *Error, or nil if it has none.
func As(err error) *Error {
	var fe *Error
	if errors.As(err, &fe) {
		return fe
	}
	return nil
}

// Join gathers the issues of several errors into one error whose kind is
// the first of theirs in the order of kinds; nil if there are none. The
// first internal cause is kept; the issues are bounded like any answer's
// (Collector).
func Join(errs ...*Error) error {
	var out *Error
	var issues Collector
	for _, e := range errs {
		if e == nil {
			continue
		}
		if out == nil {
			out = &Error{Kind: e.Kind}
		}
		if e.Kind < out.Kind {
			out.Kind = e.Kind
		}
		issues.AddAll(e.Issues)
		if out.Err == nil {
			out.Err = e.Err
		}
	}
	if out == nil {
		return nil
	}
	out.Issues = issues.Issues()
	return out
}

// Invalid gathers issues found in a request body into one error, whose kind
// is the first of the error issues' kinds (a malformed body before a rule
// broken). It returns nil if there are no error-severity issues.
func Invalid(issues []Issue) error {
	kind := KindNone
	for _, is := range issues {
		if is.Severity != "" && is.Severity != "error" && is.Severity != "fatal" {
			continue
		}
		if k := is.Kind; k != KindNone && (kind == KindNone || k < kind) {
			kind = k
		}
	}
	if kind == KindNone {
		return nil
	}
	return &Error{Kind: kind, Issues: issues}
}

// Under points err's issues into the element at prefix (a Bundle entry,
// Bundle.entry[i]): expressions about the entry's resource of type typ
// (EpisodeOfCare.patient…) become prefix.resource.patient…, issues without
// one name the entry, and expressions already in the Bundle are kept. With
// no prefix, or an error that is not an *Error, err is returned as it is.
func Under(prefix, typ string, err error) error {
	fe := As(err)
	if prefix == "" || fe == nil {
		return err
	}
	out := &Error{Kind: fe.Kind, Err: fe.Err, Issues: make([]Issue, len(fe.Issues))}
	for j, is := range fe.Issues {
		if len(is.Expression) == 0 {
			is.Expression = []string{prefix}
		} else {
			ex := make([]string, len(is.Expression))
			for k, x := range is.Expression {
				switch {
				case strings.HasPrefix(x, "Bundle."):
					ex[k] = x
				case typ != "" && x == typ:
					ex[k] = prefix + ".resource"
				case typ != "" && strings.HasPrefix(x, typ+"."):
					ex[k] = prefix + ".resource" + x[len(typ):]
				default:
					ex[k] = prefix + ".resource." + x
				}
			}
			is.Expression = ex
		}
		out.Issues[j] = is
	}
	return out
}
