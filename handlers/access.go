package handlers

import (
	"fmt"
	"strings"

	"github.com/gin-gonic/gin"

	"cpis/auth"
	"cpis/fhir"
	"cpis/store"
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
			return false, fhir.At(fhir.CodeInvalidValue, "silent", "silent must be true or false")
		}
		fromParam = &v
	}
	if h := c.GetHeader("IsUnscheduledAccessEvent"); h != "" {
		v, ok := parseBool(h)
		if !ok {
			return false, fhir.Errorf(fhir.CodePreconditionFailed, "Missing or invalid head parameter: IsUnscheduledAccessEvent must be true or false").WithStatus(400)
		}
		silent := !v
		fromHeader = &silent
	}
	switch {
	case fromParam != nil && fromHeader != nil && *fromParam != *fromHeader:
		return false, fhir.Errorf(fhir.CodeInvalidValue, "silent and IsUnscheduledAccessEvent disagree; send one of them")
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

// mayRead checks the caller may read typ in the given mode: a read that
// notifies needs B0107 (or a system read scope), a silent read needs B0170.
func mayRead(p *auth.Principal, typ string, silent bool) error {
	acc := auth.Read
	if silent {
		acc = auth.SilentRead
	}
	if p.Allows(typ, acc) {
		return nil
	}
	switch {
	case p.Kind == auth.System && silent:
		return fhir.Errorf(fhir.CodeAccessDenied, "Access has been denied to process this request: silent reads are for scheduled-care users (B0170)")
	case p.Kind == auth.System:
		return fhir.Errorf(fhir.CodeAccessDenied, "Access has been denied to process this request: the token has no system/%s.read scope", typ)
	case silent:
		return fhir.Errorf(fhir.CodeAccessDenied, "Access has been denied to process this request: a silent read of %s needs activity B0170", typ)
	}
	return fhir.Errorf(fhir.CodeAccessDenied, "Access has been denied to process this request: reading %s needs activity B0107 (or B0170 with a silent read)", typ)
}

// mayWrite checks the caller may write typ: only local authority systems
// with the write scope.
func mayWrite(p *auth.Principal, typ string) error {
	if p.Kind == auth.System && p.Allows(typ, auth.Write) {
		return nil
	}
	if p.Kind != auth.System {
		return fhir.Errorf(fhir.CodeAccessDenied, "Access has been denied to process this request: health users cannot change %s", typ)
	}
	return fhir.Errorf(fhir.CodeAccessDenied, "Access has been denied to process this request: the token has no system/%s.write scope", typ)
}

// mayReadRecord checks the caller may see a stored record: a local
// authority sees only what it manages. Another's record is not found, the
// very answer a missing id gets, so ids cannot be probed for existence.
func mayReadRecord(p *auth.Principal, r store.Record) error {
	if p.Kind == auth.System && r.Owner != p.OrgCode {
		return fmt.Errorf("handlers: %s/%s is managed by another organisation: %w", r.Type, r.ID, store.ErrNotFound)
	}
	return nil
}

// patientTypes are the types whose reads touch a patient and are audited.
func patientType(typ string) bool { return typ == "Flag" || typ == "EpisodeOfCare" }
