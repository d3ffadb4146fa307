package handlers

import (
	"strings"

	"github.com/gin-gonic/gin"

	"cpis/auth"
	"cpis/fhir"
	"cpis/handlers/registry"
)

// principal is the verified caller; the auth middleware guarantees one on
// every route that calls this.
func principal(c *gin.Context) *auth.Principal { return auth.FromContext(c) }

// silentMode reads the silent-read switch: silent=true (param) or the
// header IsUnscheduledAccessEvent: false. Without either a read is
// unscheduled (it notifies). Contradicting switches are refused.
func silentMode(c *gin.Context, param string, hasParam bool) (bool, error) {
	var fromParam, fromHeader *bool
	if hasParam {
		v, ok := parseBool(param)
		if !ok {
			return false, fhir.At(fhir.KindInvalid, "silent", "silent must be true or false")
		}
		fromParam = &v
	}
	if h := c.GetHeader("IsUnscheduledAccessEvent"); h != "" {
		v, ok := parseBool(h)
		if !ok {
			return false, fhir.Errorf(fhir.KindInvalidHeader, "Missing or invalid head parameter: IsUnscheduledAccessEvent must be true or false")
		}
		silent := !v
		fromHeader = &silent
	}
	switch {
	case fromParam != nil && fromHeader != nil && *fromParam != *fromHeader:
		return false, fhir.Errorf(fhir.KindInvalid, "silent and IsUnscheduledAccessEvent disagree; send one of them")
	case fromParam != nil:
		return *fromParam, nil
	case fromHeader != nil:
		return *fromHeader, nil
	}
	return false, nil
}

func parseBool(s string) (bool, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

// caller is who asks and how, as the registry needs it: the principal,
// the silent switch, and what names the request in the logs.
func caller(c *gin.Context, silent bool) registry.Caller {
	return registry.Caller{P: principal(c), Silent: silent, RequestID: requestIDOf(c), Route: c.FullPath(), TraceID: traceIDOf(c)}
}
