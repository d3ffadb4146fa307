package registry

import (
	"context"
	"encoding/json"
	"log/slog"

	"cpis/fhir"
	"cpis/store"
)

// Defence in depth for the NHS-number index: every record a search by NHS
// number returns is checked to be about that NHS number, by the store's
// subject column and by the body served, before anything is shown. A
// mismatch (a corrupt or mis-migrated index, a bug in a backend) is a 503
// and an ERROR log naming only the record, never another child's record.

// aboutPatient is where the served resources name their patient: a Flag's
// subject, an EpisodeOfCare's patient, an AuditEvent's Patient entity.
type aboutPatient struct {
	Subject *fhir.Reference `json:"subject"`
	Patient *fhir.Reference `json:"patient"`
	Entity  []struct {
		What *fhir.Reference `json:"what"`
	} `json:"entity"`
}

// bodyNHSNumbers lists the NHS numbers a resource body names as its patient.
func bodyNHSNumbers(body []byte) []string {
	var a aboutPatient
	if json.Unmarshal(body, &a) != nil {
		return nil
	}
	refs := []*fhir.Reference{a.Subject, a.Patient}
	for _, e := range a.Entity {
		refs = append(refs, e.What)
	}
	var out []string
	for _, r := range refs {
		if r != nil && r.Identifier != nil && r.Identifier.System == fhir.NHSNumberSystem {
			out = append(out, r.Identifier.Value)
		}
	}
	return out
}

// aboutOnly reports whether a body names exactly one patient, nhs.
func aboutOnly(body []byte, nhs string) bool {
	got := bodyNHSNumbers(body)
	if len(got) == 0 {
		return false
	}
	for _, g := range got {
		if g != nhs {
			return false
		}
	}
	return true
}

// indexMismatch is the answer to a record the index returned for the wrong
// patient: logged with the record's type and id only, and a 503.
func (r *Registry) indexMismatch(ctx context.Context, c Caller, typ, id string) error {
	r.log.LogAttrs(ctx, slog.LevelError, "search index mismatch: a record returned for an NHS number is about another patient; nothing was served",
		slog.String("request_id", c.RequestID), slog.String("type", typ), slog.String("id", id))
	return fhir.Errorf(fhir.KindUnavailable, "The service is unavailable; try again shortly (request %s)", c.RequestID)
}

// checkSubjects verifies every record a search by NHS number returns is
// about that NHS number: the store's subject and the body served.
func (r *Registry) checkSubjects(ctx context.Context, c Caller, nhs string, recs []store.Record) error {
	for _, rec := range recs {
		if rec.Subject != nhs || !r.verified.aboutOnly(rec.Body, nhs) {
			return r.indexMismatch(ctx, c, rec.Type, rec.ID)
		}
	}
	return nil
}

// checkAuditSubjects is checkSubjects for access records.
func (r *Registry) checkAuditSubjects(ctx context.Context, c Caller, nhs string, recs []store.AuditRecord) error {
	for _, rec := range recs {
		if rec.Subject != nhs || !r.verifiedAudit.aboutOnly(rec.Body, nhs) {
			return r.indexMismatch(ctx, c, "AuditEvent", rec.ID)
		}
	}
	return nil
}
