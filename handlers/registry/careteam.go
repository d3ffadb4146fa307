package registry

import (
	"context"

	"cpis/fhir"
	"cpis/profiles"
	"cpis/store"
)

// CareTeam is the national CP-IS FHIR consumer API's view of a plan: the
// server stores no CareTeams; a read or search of CareTeam reads the
// EpisodeOfCare records and renders each, with its local authority's
// current Organization, as the CPIS-CareTeam. It is read like the Flag (the
// same permission, the same audit), as it tells the same thing.
const careTeamType = "CareTeam"

// storedType is the type of the records a read of typ reads.
func storedType(typ string) string {
	if typ == careTeamType {
		return "EpisodeOfCare"
	}
	return typ
}

// permType is the type whose permission a read of typ needs: a CareTeam
// is the Flag's alert as the national API serves it.
func permType(typ string) string {
	if typ == careTeamType {
		return "Flag"
	}
	return typ
}

// careTeams renders plans as CareTeams, each with its local authority's
// current Organization (looked up by the authority's ODS key, once per
// authority). A store error fails the whole read: a CareTeam is never shown
// without the authority's numbers because the store could not be asked.
func (r *Registry) careTeams(ctx context.Context, c Caller, recs []store.Record) ([]store.Record, error) {
	type org struct {
		la  *profiles.LA
		rec store.Record // the Organization, for its lastUpdated
	}
	orgs := map[string]*org{}
	now := r.Now()
	out := make([]store.Record, len(recs))
	for i, rec := range recs {
		o, ok := orgs[rec.Owner]
		if !ok {
			o = &org{}
			if rec.Owner != "" {
				found, _, err := r.st.Search(ctx, store.Query{Type: "Organization", Key: laKey(rec.Owner), Limit: 1})
				if err != nil {
					return nil, storeErr(c, err)
				}
				if len(found) > 0 {
					la, err := profiles.StoredLA(found[0].Body)
					if err != nil {
						return nil, fhir.Wrap(fhir.KindInternal, err, "A local authority record could not be read")
					}
					o.la, o.rec = la, found[0]
				}
			}
			orgs[rec.Owner] = o
		}
		p, err := profiles.StoredPlan(rec.Body, r.loc)
		if err != nil {
			return nil, fhir.Wrap(fhir.KindInternal, err, "A plan could not be read")
		}
		updated := rec.Updated
		if o.rec.Updated.After(updated) {
			updated = o.rec.Updated
		}
		body, _ := profiles.CareTeam(p, o.la, rec.Version, updated, now)
		out[i] = store.Record{Type: careTeamType, ID: rec.ID, Version: rec.Version, Updated: updated, Body: body,
			Owner: rec.Owner, Subject: rec.Subject, End: rec.End}
	}
	return out, nil
}

// readCareTeam is Read of a CareTeam: the plan by id, checked and audited
// as a read of the Flag by id is (never silent), then rendered.
func (r *Registry) readCareTeam(ctx context.Context, c Caller, id string) (store.Record, error) {
	rec, err := r.st.Get(ctx, storedType(careTeamType), id)
	if err != nil {
		return store.Record{}, storeErr(c, err)
	}
	if err := r.visible(c.P, rec); err != nil {
		return store.Record{}, err
	}
	rec.Type = careTeamType
	if rec.Deleted {
		return gone(rec)
	}
	out, err := r.careTeams(ctx, c, []store.Record{rec})
	if err != nil {
		return store.Record{}, err
	}
	if err := r.auditRecords(ctx, c, "read", []store.Record{rec}); err != nil {
		return store.Record{}, err
	}
	return out[0], nil
}
