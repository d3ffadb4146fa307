package handlers

import (
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"cpis/fhir"
	"cpis/handlers/registry"
	"cpis/store"
)

// auditSortDoc documents _sort on AuditEvent: date is when recorded.
const auditSortDoc = "_sort=date or -date orders by when the access was recorded: the access history is newest first (-date, its default) " +
	"or, with _sort=date, the same accesses oldest first; the feed is oldest first (date, its only order: it is followed forward with " +
	"its links), so -date there is ignored and reported in an OperationOutcome entry (400 with Prefer: handling=strict), as is any other _sort " +
	"(date,_id too: accesses are not ordered by id). "

// searchAudit serves GET /AuditEvent: the access history of one patient
// (?patient:identifier=), or a local authority's notification feed
// (?date=ge…).
func (s *Server) searchAudit(c *gin.Context) error {
	sr, err := s.parseSearch(c, "AuditEvent")
	if err != nil {
		return err
	}
	var subject string
	var since time.Time
	hasDate := false
	for _, prm := range sr.applied {
		switch sr.spec.param(prm.Raw).Kind {
		case paramNHSNumber:
			if subject, err = nhsNumber(prm); err != nil {
				return err
			}
		case paramDate:
			if hasDate || len(prm.Values) != 1 {
				return fhir.At(fhir.KindInvalidSearch, "date", "Give one date: date=ge{date}")
			}
			d, ok := fhir.ParseDate(prm.Values[0], s.Location)
			if !ok || (d.Prefix != "ge" && d.Prefix != "gt" && d.Prefix != "sa") {
				return fhir.At(fhir.KindInvalidSearch, "date", "date must be ge{date} or gt{date}, e.g. date=ge2026-01-01")
			}
			since, hasDate = d.Low, true
			if d.Prefix != "ge" {
				since = d.High
			}
		}
	}
	// Accesses are not ordered by id on ties (the feed by its sequence), so
	// date,_id is not served here; nor is -date on the feed, which is read
	// forward only.
	if strings.Contains(sr.q.Sort, ",") || (sr.sort == registry.SortDateDesc && subject == "" && hasDate) {
		sr.ignored = append(sr.ignored, "_sort="+sr.q.Sort)
		sr.sort, sr.q.Sort = registry.SortID, ""
		if preferStrict(c) {
			return fhir.Errorf(fhir.KindInvalidSearch, "Unknown or unsupported search parameters: %s", strings.Join(sr.ignored, ", "))
		}
	}
	switch {
	case subject != "":
		return s.accessHistory(c, sr, subject, since)
	case hasDate && sr.p.IsLA():
		return s.feed(c, sr, since)
	case hasDate:
		return fhir.Errorf(fhir.KindInvalidSearch, "The access feed is for local authorities; search the access history by the patient's NHS number")
	}
	return fhir.Errorf(fhir.KindInvalidSearch, "Search AuditEvent by the patient's NHS number (patient:identifier=%s|{NHS number}), or, as a local authority, by date=ge{date}", fhir.NHSNumberSystem)
}

// accessHistory answers the registry's access history of a patient, newest
// first.
func (s *Server) accessHistory(c *gin.Context, sr *searchRequest, subject string, since time.Time) error {
	kept, err := s.reg.AccessHistory(c.Request.Context(), caller(c, sr.silent), subject, since, "AuditEvent?"+s.selfQuery(sr, ""))
	if err != nil {
		return err
	}
	total := len(kept)
	b := &fhir.Bundle{Type: "searchset", Total: &total, Timestamp: fhir.Instant(s.now()),
		Link: []fhir.Link{{Relation: "self", URL: s.selfLink("AuditEvent", sr, searchCursorTTL)}}}
	shown := kept // oldest first, as the registry returns them: _sort=date
	if sr.sort != registry.SortDate {
		shown = make([]store.AuditRecord, 0, len(kept))
		for i := len(kept) - 1; i >= 0; i-- {
			shown = append(shown, kept[i])
		}
	}
	if err := s.auditEntries(b, sr, shown); err != nil {
		return err
	}
	s.writeBundle(c, b)
	return nil
}

// wantsRoles reports whether an AuditEvent search asks for the accessing
// users' PractitionerRoles: _include=AuditEvent:agent[:PractitionerRole],
// or the national CP-IS API's AuditEvent:entity-type=…v3-RoleClass|ASSIGNED.
func wantsRoles(sr *searchRequest) bool {
	for _, inc := range sr.q.Includes {
		if sr.spec.includes(inc) {
			return true
		}
	}
	return false
}

// auditEntries adds the access records the registry returned to an
// AuditEvent searchset, in order: as matches (none with _summary=count),
// then, if asked, the PractitionerRoles the registry renders from them
// (search.mode include; each AuditEvent's agent references its
// PractitionerRole, whose fullUrl the reference resolves to), then the
// parameters the search ignored.
func (s *Server) auditEntries(b *fhir.Bundle, sr *searchRequest, recs []store.AuditRecord) error {
	if sr.q.Summary == "count" {
		recs = nil
	}
	var roles []store.Record
	if wantsRoles(sr) {
		var err error
		if recs, roles, err = registry.WithRoles(recs); err != nil {
			return err
		}
	}
	for _, r := range recs {
		b.Entry = append(b.Entry, fhir.Entry{FullURL: s.fullURL("AuditEvent", r.ID), Resource: r.Body, Search: &fhir.EntrySearch{Mode: "match"}})
	}
	for _, r := range roles {
		b.Entry = append(b.Entry, fhir.Entry{FullURL: s.fullURL(r.Type, r.ID), Resource: r.Body, Search: &fhir.EntrySearch{Mode: "include"}})
	}
	if len(sr.ignored) > 0 {
		b.Entry = append(b.Entry, ignoredEntry(sr))
	}
	return nil
}

// feed answers one page of a local authority's notification feed, oldest
// first. The next link carries the store's cursor; a page with entries
// always has a next link, so a client can keep the last one and poll it
// later.
func (s *Server) feed(c *gin.Context, sr *searchRequest, since time.Time) error {
	page, err := s.reg.Feed(c.Request.Context(), caller(c, sr.silent), since, sr.q.Cursor, sr.q.Count)
	if err != nil {
		return err
	}
	total := page.Total
	b := &fhir.Bundle{Type: "searchset", Total: &total, Timestamp: fhir.Instant(s.now()),
		Link: []fhir.Link{{Relation: "self", URL: s.selfLink("AuditEvent", sr, feedCursorTTL)}}}
	if len(page.Events) > 0 && page.Next != "" {
		b.Link = append(b.Link, fhir.Link{Relation: "next", URL: s.pageLink("AuditEvent", sr, page.Next, feedCursorTTL)})
	}
	if err := s.auditEntries(b, sr, page.Events); err != nil {
		return err
	}
	s.writeBundle(c, b)
	return nil
}
