package registry

import (
	"context"
	"strings"
	"time"

	"cpis/fhir"
	"cpis/profiles"
	"cpis/store"
)

// The reads below are the only way to obtain records about a patient: each
// returns them only after the access is audited (audited), with their bodies
// as they may be shown (a Flag as of now). A deleted resource answers with a
// KindGone error and its tombstone (for the version headers).

// shown is what a record shows now: a derived Flag turns inactive when its
// plan's period is over, without being written again. (Only Flags have an
// Ends.)
func (r *Registry) shown(rec store.Record) store.Record {
	rec.Body = profiles.FlagAt(rec.Body, rec.Ends, r.Now())
	return rec
}

func gone(rec store.Record) (store.Record, error) {
	rec.Body = nil
	return rec, fhir.Errorf(fhir.KindGone, "%s/%s was deleted at version %d", rec.Type, rec.ID, rec.Version)
}

// auditRecords audits a read of records: every patient any of them is about
// (a plan's NHS number may have been corrected between versions), once each.
func (r *Registry) auditRecords(ctx context.Context, c Caller, interaction string, recs []store.Record) error {
	if len(recs) == 0 || !PatientType(recs[0].Type) {
		return nil
	}
	t := touched{}
	for _, rec := range recs {
		if rec.Subject == "" || rec.Deleted {
			continue
		}
		if _, ok := t[rec.Subject]; !ok {
			t.add(rec)
		}
	}
	return r.audited(ctx, c, interaction, "", recs[0].Type+"/"+recs[0].ID, t)
}

// Read returns the current version of typ/id.
func (r *Registry) Read(ctx context.Context, c Caller, typ, id string) (store.Record, error) {
	if err := ByID(c, typ); err != nil {
		return store.Record{}, err
	}
	if typ == careTeamType {
		return r.readCareTeam(ctx, c, id)
	}
	rec, err := r.st.Get(ctx, typ, id)
	if err != nil {
		return store.Record{}, storeErr(c, err)
	}
	if err := r.visible(c.P, rec); err != nil {
		return store.Record{}, err
	}
	if rec.Deleted {
		return gone(rec)
	}
	if err := r.auditRecords(ctx, c, "read", []store.Record{rec}); err != nil {
		return store.Record{}, err
	}
	return r.shown(rec), nil
}

// VRead returns version vid of typ/id. Who may see it is decided by the
// current version; for clinicians a version written before a delete is gone,
// as the delete said the plan was recorded in error.
func (r *Registry) VRead(ctx context.Context, c Caller, typ, id string, vid int64) (store.Record, error) {
	if err := ByID(c, typ); err != nil {
		return store.Record{}, err
	}
	cur, err := r.st.Get(ctx, storedType(typ), id)
	if err != nil {
		return store.Record{}, storeErr(c, err)
	}
	if err := r.visible(c.P, cur); err != nil {
		return store.Record{}, err
	}
	if !c.P.IsLA() && vid < cur.Version {
		tomb, deleted, err := r.deletedSince(ctx, c, storedType(typ), id, vid, cur)
		if err != nil {
			return store.Record{}, err
		}
		if deleted {
			tomb.Type = typ
			return gone(tomb)
		}
	}
	rec, err := r.st.GetVersion(ctx, storedType(typ), id, vid)
	if err != nil {
		return store.Record{}, storeErr(c, err)
	}
	rec.Type = typ
	if rec.Deleted {
		return gone(rec)
	}
	shown := []store.Record{r.shown(rec)}
	if typ == careTeamType {
		// Rendered before the audit, as a read: no CareTeam without its
		// local authority's numbers, and no access recorded for nothing.
		if shown, err = r.careTeams(ctx, c, []store.Record{rec}); err != nil {
			return store.Record{}, err
		}
	}
	if err := r.auditRecords(ctx, c, "vread", []store.Record{rec}); err != nil {
		return store.Record{}, err
	}
	return shown[0], nil
}

// deletedSince reports whether typ/id was deleted after version vid (cur is
// its current version), and returns the tombstone.
func (r *Registry) deletedSince(ctx context.Context, c Caller, typ, id string, vid int64, cur store.Record) (store.Record, bool, error) {
	if cur.Deleted {
		return cur, true, nil
	}
	recs, err := r.st.History(ctx, typ, id)
	if err != nil {
		return store.Record{}, false, storeErr(c, err)
	}
	for _, rec := range recs {
		if rec.Deleted && rec.Version > vid {
			return rec, true, nil
		}
	}
	return store.Record{}, false, nil
}

// History returns every version of typ/id the caller may see, newest first.
// The current version decides who may see it; clinicians see only the
// versions written since the last delete (none if it is deleted now: gone).
func (r *Registry) History(ctx context.Context, c Caller, typ, id string) ([]store.Record, error) {
	return r.HistoryIn(ctx, c, typ, id, Window{})
}

// HistoryIn is History narrowed to the versions in w (_since, _at): only
// those are shown, and audited.
func (r *Registry) HistoryIn(ctx context.Context, c Caller, typ, id string, w Window) ([]store.Record, error) {
	if err := ByID(c, typ); err != nil {
		return nil, err
	}
	recs, err := r.st.History(ctx, storedType(typ), id)
	if err != nil {
		return nil, storeErr(c, err)
	}
	for i := range recs {
		recs[i].Type = typ
	}
	cur := recs[0]
	if err := r.visible(c.P, cur); err != nil {
		return nil, err
	}
	if !c.P.IsLA() {
		if recs = sinceDelete(recs); len(recs) == 0 {
			_, err := gone(cur)
			return []store.Record{{Type: cur.Type, ID: cur.ID, Version: cur.Version, Updated: cur.Updated, Deleted: true}}, err
		}
	}
	recs = w.keep(recs)
	var teams []store.Record
	if typ == careTeamType {
		// Each version of the plan as a CareTeam, rendered before the audit
		// as a read is (a local authority also sees its tombstones).
		var live []store.Record
		for _, rec := range recs {
			if !rec.Deleted {
				live = append(live, rec)
			}
		}
		if teams, err = r.careTeams(ctx, c, live); err != nil {
			return nil, err
		}
	}
	if err := r.auditRecords(ctx, c, "history-instance", recs); err != nil {
		return nil, err
	}
	for i := range recs {
		switch {
		case recs[i].Deleted:
		case typ == careTeamType:
			recs[i], teams = teams[0], teams[1:]
		default:
			recs[i] = r.shown(recs[i])
		}
	}
	return recs, nil
}

// sinceDelete keeps the versions written after the latest delete (history
// is newest first): none if the resource is deleted now.
func sinceDelete(recs []store.Record) []store.Record {
	for i, r := range recs {
		if r.Deleted {
			return recs[:i]
		}
	}
	return recs
}

// Search is a search of one type, as parsed by the handlers.
type Search struct {
	Type string
	// Subject is the NHS number searched by ("" if none).
	Subject string
	// Identifier is an identifier searched by, system|value ("" if none).
	Identifier string
	IDs        []string
	// Limit caps the matches returned (0: the total only); After continues
	// after an id.
	Limit int
	After string
	// UpdatedFrom (inclusive) and UpdatedTo (exclusive) bound when the
	// records were last updated (_lastUpdated; zero: no bound).
	UpdatedFrom, UpdatedTo time.Time
	// Sort orders the matches; with a sort by Updated, AfterUpdated is the
	// Updated of the record After names (the page's keyset position).
	Sort         store.Sort
	AfterUpdated time.Time
	// AfterStart is the Start of the record After names under a sort by
	// start (_sort=date; zero: it has none).
	AfterStart time.Time
	// Include asks for the local authorities' Organizations that manage the
	// matches (_include=Flag:author, EpisodeOfCare:organization).
	Include bool
	// Query is the search as the AuditEvent records it (Type?params).
	Query string
}

// Page is one page of a search: the matches (as they may be shown), the
// total, and the included Organizations.
type Page struct {
	Matches  []store.Record
	Total    int
	Included []store.Record
	// Last is the keyset position of the page's last match, as stored (a
	// CareTeam shows a later lastUpdated when its Organization changed):
	// where the next page starts.
	Last store.HistoryPosition
	// LastStart is the Start of the page's last match: its position under
	// a sort by start.
	LastStart time.Time
}

// Search finds the live, retained records of a type the caller may see: a
// local authority sees only what it manages; a health user must name a
// patient. A search of patient records is audited before it returns, for
// every match, not only the page.
func (r *Registry) Search(ctx context.Context, c Caller, s Search) (Page, error) {
	if err := MayRead(c.P, s.Type, c.Silent); err != nil {
		return Page{}, err
	}
	q := store.Query{Type: storedType(s.Type), Subject: s.Subject, IDs: s.IDs, RetainedSince: r.RetainedSince(), Limit: s.Limit, After: s.After, Count: true,
		UpdatedFrom: s.UpdatedFrom, UpdatedTo: s.UpdatedTo, Sort: s.Sort, AfterUpdated: s.AfterUpdated, AfterStart: s.AfterStart}
	if s.Identifier != "" {
		// Identifiers are unique within the organisation that manages the
		// resource: a local authority searches its own; an LA's
		// Organization is managed by its own ODS code; a health user's
		// search of plans (by NHS number) matches the identifier under
		// whichever LA manages each plan. The store applies it before
		// paging and counting, like every other condition.
		switch {
		case c.P.IsLA():
			q.Key = storeKey(c.P.OrgCode, s.Identifier)
		case s.Type == "Organization":
			q.Key = storeKey(fhir.ParseToken(s.Identifier).Code, s.Identifier)
		default:
			q.OwnKey = s.Identifier
		}
	}
	if c.P.IsLA() {
		q.Owner = c.P.OrgCode
	} else if PatientType(s.Type) && q.Subject == "" {
		return Page{}, fhir.Errorf(fhir.KindInvalidSearch, "Search by the patient's NHS number: %s?patient:identifier=%s|{NHS number}", s.Type, fhir.NHSNumberSystem)
	}
	recs, total, err := r.st.Search(ctx, q)
	if err != nil {
		return Page{}, storeErr(c, err)
	}
	var last store.HistoryPosition
	var lastStart time.Time
	if len(recs) > 0 {
		last, lastStart = recs[len(recs)-1].Position(), recs[len(recs)-1].Start
	}
	if q.Subject != "" {
		if err := r.checkSubjects(ctx, c, q.Subject, recs); err != nil {
			return Page{}, err
		}
	}
	// A CareTeam is rendered before the access is audited: if its local
	// authority's numbers cannot be read, nothing is shown and nobody is
	// told of an access that did not happen.
	var shown []store.Record
	if s.Type == careTeamType {
		if shown, err = r.careTeams(ctx, c, recs); err != nil {
			return Page{}, err
		}
	}
	if PatientType(s.Type) {
		seen, err := r.allMatches(ctx, c, q, recs, total)
		if err != nil {
			return Page{}, err
		}
		t := touched{}
		if q.Subject != "" {
			t.see(q.Subject)
		}
		for _, rec := range seen {
			t.add(rec)
		}
		if err := r.audited(ctx, c, "search-type", s.Query, "", t); err != nil {
			return Page{}, err
		}
	}
	if s.Type == careTeamType {
		return Page{Matches: shown, Total: total, Last: last, LastStart: lastStart}, nil
	}
	page := Page{Matches: recs, Total: total, Last: last, LastStart: lastStart}
	for i := range recs {
		recs[i] = r.shown(recs[i])
	}
	if s.Include {
		if page.Included, err = r.include(ctx, c, recs); err != nil {
			return Page{}, err
		}
	}
	return page, nil
}

// allMatches is what a search by NHS number must audit: every match, not
// only the page. The total alone (_summary=count, _count=0, or a first page
// of a longer list) tells the caller the patient is on plans, so every local
// authority whose plan matched is told, and the AuditEvent counts them all.
// Only when the page does not hold every match is the store asked again; a
// patient has a handful of plans.
func (r *Registry) allMatches(ctx context.Context, c Caller, q store.Query, recs []store.Record, total int) ([]store.Record, error) {
	if q.Subject == "" || total <= len(recs) {
		return recs, nil
	}
	all := q
	all.Limit, all.After, all.AfterUpdated, all.AfterStart, all.Count = total, "", time.Time{}, time.Time{}, false
	matches, _, err := r.st.Search(ctx, all)
	if err != nil {
		return nil, storeErr(c, err)
	}
	return matches, r.checkSubjects(ctx, c, q.Subject, matches)
}

// include finds the Organizations of the local authorities managing the
// matches. Each is checked like a read: a caller who may not read
// Organizations, or a local authority looking at another's, gets none.
func (r *Registry) include(ctx context.Context, c Caller, recs []store.Record) ([]store.Record, error) {
	if len(recs) == 0 || MayRead(c.P, "Organization", c.Silent) != nil {
		return nil, nil
	}
	seen := map[string]bool{}
	var out []store.Record
	for _, rec := range recs {
		if rec.Owner == "" || seen[rec.Owner] {
			continue
		}
		seen[rec.Owner] = true
		orgs, _, err := r.st.Search(ctx, store.Query{Type: "Organization", Key: laKey(rec.Owner), Limit: 1})
		if err != nil {
			return nil, storeErr(c, err)
		}
		for _, o := range orgs {
			if mayReadRecord(c.P, o) == nil {
				out = append(out, o)
			}
		}
	}
	return out, nil
}

// laKey is the store key of a local authority's Organization.
func laKey(ods string) string { return storeKey(ods, fhir.ODSSystem+"|"+ods) }

// storeKey is the store's unique key of an identifier: an identifier is
// unique among the resources one organisation manages, so two local
// authorities whose systems number plans alike never clash.
func storeKey(owner, token string) string { return owner + "|" + token }

// keyToken is the identifier (system|value) a store key holds.
func keyToken(key string) string {
	_, token, _ := strings.Cut(key, "|")
	return token
}
