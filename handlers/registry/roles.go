package registry

import (
	"cpis/fhir"
	"cpis/profiles"
	"cpis/store"
)

// practitionerRoleType is the type of the PractitionerRoles the access
// history includes. The server stores none: each is rendered from the
// AuditEvents it is included with.
const practitionerRoleType = "PractitionerRole"

// WithRoles is the national CP-IS API's form of access records already
// returned to the caller (by AccessHistory or Feed, so authorised, audited
// and each shown as the caller may see it): every AuditEvent re-rendered
// with its user's agent referencing a PractitionerRole, and one
// PractitionerRole per person, role and organisation among them, in the
// order first met in recs (the first meeting's rendering). It reads nothing:
// a PractitionerRole holds only what the AuditEvent beside it already
// shows, so a local authority sees only the people its own view of each
// access names. An access by a local authority system has no
// PractitionerRole and is returned as it was.
func WithRoles(recs []store.AuditRecord) ([]store.AuditRecord, []store.Record, error) {
	out := make([]store.AuditRecord, len(recs))
	seen := map[string]bool{}
	var roles []store.Record
	for i, rec := range recs {
		linked, id, role, err := profiles.LinkPractitionerRole(rec.Body)
		if err != nil {
			return nil, nil, fhir.Wrap(fhir.KindInternal, err, "An access record could not be read")
		}
		rec.Body = linked
		out[i] = rec
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		roles = append(roles, store.Record{Type: practitionerRoleType, ID: id, Version: 1, Updated: rec.Recorded, Body: role})
	}
	return out, roles, nil
}
