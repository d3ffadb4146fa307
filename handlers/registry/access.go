package registry

import (
	"fmt"

	"cpis/auth"
	"cpis/fhir"
	"cpis/store"
)

// PatientType reports whether records of typ are about a patient: their
// reads are audited, and health users find them by NHS number only.
func PatientType(typ string) bool {
	return typ == "Flag" || typ == "EpisodeOfCare" || typ == careTeamType
}

// MayRead checks the caller may read typ in the given mode: a read that
// notifies needs B0107 (or a system read scope), a silent read needs B0170.
// Every registry read checks it; handlers call it too, to refuse a request
// before reading its parameters.
func MayRead(p *auth.Principal, typ string, silent bool) error {
	acc := auth.Read
	if silent {
		acc = auth.SilentRead
	}
	if p.Allows(permType(typ), acc) {
		return nil
	}
	switch {
	case p.Kind == auth.System && silent:
		return fhir.Errorf(fhir.KindForbidden, "Access has been denied to process this request: silent reads are for scheduled-care users (B0170)")
	case p.Kind == auth.System:
		return fhir.Errorf(fhir.KindForbidden, "Access has been denied to process this request: the token has no system/%s.read scope", permType(typ))
	case silent:
		return fhir.Errorf(fhir.KindForbidden, "Access has been denied to process this request: a silent read of %s needs activity B0170", typ)
	}
	return fhir.Errorf(fhir.KindForbidden, "Access has been denied to process this request: reading %s needs activity B0107 (or B0170 with a silent read)", typ)
}

// MayWrite checks the caller may write typ: only local authority systems
// with the write scope.
func MayWrite(p *auth.Principal, typ string) error {
	if p.Kind == auth.System && p.Allows(typ, auth.Write) {
		return nil
	}
	if p.Kind != auth.System {
		return fhir.Errorf(fhir.KindForbidden, "Access has been denied to process this request: health users cannot change %s", typ)
	}
	return fhir.Errorf(fhir.KindForbidden, "Access has been denied to process this request: the token has no system/%s.write scope", typ)
}

// MayPostBundle checks the caller is a local authority system allowed to
// write something; each entry's own type is checked as it is read.
func MayPostBundle(p *auth.Principal) error {
	if p.Kind != auth.System {
		return fhir.Errorf(fhir.KindForbidden, "Access has been denied to process this request: health users cannot post Bundles")
	}
	if !p.Allows("EpisodeOfCare", auth.Write) && !p.Allows("Organization", auth.Write) {
		return fhir.Errorf(fhir.KindForbidden, "Access has been denied to process this request: posting a Bundle needs system/EpisodeOfCare.write or system/Organization.write")
	}
	return nil
}

// mayReadRecord checks the caller may see a stored record: a local
// authority sees only what it manages. Another's record is not found, the
// very answer a missing id gets, so ids cannot be probed for existence.
func mayReadRecord(p *auth.Principal, r store.Record) error {
	if p.Kind == auth.System && r.Owner != p.OrgCode {
		return fhir.Wrap(fhir.KindNotFound, fmt.Errorf("registry: %s/%s is managed by another organisation: %w", r.Type, r.ID, store.ErrNotFound), "Resource not found")
	}
	return nil
}

// ByID checks a read by id (read, vread, history): it is never silent. Ids
// are chosen by local authorities and can be guessed; a silent read by id
// would show a child's NHS number with no access notification, so a silent
// read must name the patient (a search by NHS number).
func ByID(c Caller, typ string) error {
	if c.Silent {
		return fhir.Errorf(fhir.KindForbidden, "Access has been denied to process this request: a silent read must name the patient; search by NHS number with silent=true (reads by id are always audited)")
	}
	return MayRead(c.P, typ, false)
}

// visible checks the caller may see the record (another's is not found,
// exactly as a missing id) and that it has not passed retention (then it is
// treated as gone even before the sweeper purges it).
func (r *Registry) visible(p *auth.Principal, rec store.Record) error {
	if err := mayReadRecord(p, rec); err != nil {
		return err
	}
	if !rec.End.IsZero() && rec.End.Before(r.RetainedSince()) {
		return fhir.Errorf(fhir.KindNotFound, "Resource not found")
	}
	return nil
}

// AboutPatients reports whether reading typ can reveal a patient's records:
// the patient types, and AuditEvent (a patient's access history tells
// whether the child is on a plan). Every read route of such a type must be
// audited; the handlers' tests derive the routes to check from it.
func AboutPatients(typ string) bool { return PatientType(typ) || typ == "AuditEvent" }
