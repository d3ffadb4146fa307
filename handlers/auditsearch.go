package handlers

import (
	"slices"
	"time"

	"github.com/gin-gonic/gin"

	"cpis/fhir"
	"cpis/store"
)

// Access history rules (contract section 6).
const (
	historyEntries = 25
	repeatWindow   = 24 * time.Hour
	// historyWindow bounds the accesses read to build the history: a child
	// accessed more than this often is judged on the most recent ones.
	historyWindow = 2000
)

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
				return fhir.At(fhir.CodeInvalidSearchData, "date", "Give one date: date=ge{date}")
			}
			d, ok := fhir.ParseDate(prm.Values[0], s.Location)
			if !ok || (d.Prefix != "ge" && d.Prefix != "gt" && d.Prefix != "sa") {
				return fhir.At(fhir.CodeInvalidSearchData, "date", "date must be ge{date} or gt{date}, e.g. date=ge2026-01-01")
			}
			since, hasDate = d.Low, true
			if d.Prefix != "ge" {
				since = d.High
			}
		}
	}
	switch {
	case subject != "":
		return s.accessHistory(c, sr, subject, since)
	case hasDate && sr.p.IsLA():
		return s.feed(c, sr, since)
	case hasDate:
		return fhir.Errorf(fhir.CodeInvalidSearchData, "The access feed is for local authorities; search the access history by the patient's NHS number")
	}
	return fhir.Errorf(fhir.CodeInvalidSearchData, "Search AuditEvent by the patient's NHS number (patient:identifier=%s|{NHS number}), or, as a local authority, by date=ge{date}", fhir.NHSNumberSystem)
}

// accessHistory answers the 25 most recent accesses to a patient's records,
// newest first, counting one user's repeat accesses within 24 hours once
// (the first). A local authority sees only accesses to its own children.
func (s *Server) accessHistory(c *gin.Context, sr *searchRequest, subject string, since time.Time) error {
	ctx := c.Request.Context()
	// The most recent accesses, enough for the 25 shown after repeats are
	// counted once; an access's repeats are judged within this window.
	recs, err := s.Store.AuditBySubject(ctx, subject, time.Time{}, historyWindow)
	if err != nil {
		return err
	}
	if err := s.checkAuditSubjects(c, subject, recs); err != nil {
		return err
	}
	// Once no plan of the patient is retained, accesses older than the
	// retention period are not served (the sweeper purges them).
	cutoff := s.retainedSince()
	planRecs, plans, err := s.Store.Search(ctx, store.Query{Type: "EpisodeOfCare", Subject: subject, RetainedSince: cutoff, Limit: fhir.MaxCount, Count: true})
	if err != nil {
		return err
	}
	if err := s.checkSubjects(c, subject, planRecs); err != nil {
		return err
	}
	if plans == 0 && since.Before(cutoff) {
		since = cutoff
	}
	last := map[string]time.Time{}
	var kept []store.AuditRecord
	for _, r := range recs {
		if sr.p.IsLA() && !slices.Contains(r.Owners, sr.p.OrgCode) {
			continue
		}
		if prev, ok := last[r.Agent]; ok && r.Recorded.Sub(prev) < repeatWindow {
			continue
		}
		last[r.Agent] = r.Recorded
		if !r.Recorded.Before(since) {
			kept = append(kept, r)
		}
	}
	if len(kept) > historyEntries {
		kept = kept[len(kept)-historyEntries:]
	}
	// The history tells whether the child is on a plan (each event says how
	// many plans its access found), so reading it is an access like a
	// search: audited before the answer, the LAs managing the child told.
	t := touched{}
	t.see(subject)
	for _, r := range planRecs {
		t.add(r)
	}
	if err := s.recordAccess(c, sr.p, sr.silent, "search-type", "AuditEvent?"+s.selfQuery(sr, ""), "", t); err != nil {
		return err
	}
	total := len(kept)
	b := &fhir.Bundle{Type: "searchset", Total: &total, Timestamp: fhir.Instant(s.now()),
		Link: []fhir.Link{{Relation: "self", URL: s.selfLink("AuditEvent", sr, searchCursorTTL)}}}
	for i := len(kept) - 1; i >= 0; i-- {
		body, err := shownTo(sr.p, kept[i])
		if err != nil {
			return err
		}
		b.Entry = append(b.Entry, fhir.Entry{FullURL: s.fullURL("AuditEvent", kept[i].ID), Resource: body, Search: &fhir.EntrySearch{Mode: "match"}})
	}
	s.writeBundle(c, b)
	return nil
}

// feed answers one page of a local authority's notification feed: accesses
// to its children, oldest first. The next link carries the store's cursor,
// so following it never skips or repeats an access, even while new ones
// are recorded; a page with entries always has a next link, so a client
// can keep the last one and poll it later.
func (s *Server) feed(c *gin.Context, sr *searchRequest, since time.Time) error {
	if cutoff := s.retainedSince(); since.Before(cutoff) {
		since = cutoff
	}
	limit := sr.q.Count
	recs, next, err := s.Store.AuditFeed(c.Request.Context(), sr.p.OrgCode, since, sr.q.Cursor, limit)
	if err != nil {
		return err
	}
	// The total counts the whole feed from the date, wherever the page is.
	total, err := s.Store.AuditFeedTotal(c.Request.Context(), sr.p.OrgCode, since)
	if err != nil {
		return err
	}
	b := &fhir.Bundle{Type: "searchset", Total: &total, Timestamp: fhir.Instant(s.now()),
		Link: []fhir.Link{{Relation: "self", URL: s.selfLink("AuditEvent", sr, feedCursorTTL)}}}
	if len(recs) > 0 && next != "" {
		b.Link = append(b.Link, fhir.Link{Relation: "next", URL: s.pageLink("AuditEvent", sr, next, feedCursorTTL)})
	}
	for _, r := range recs {
		body, err := shownTo(sr.p, r)
		if err != nil {
			return err
		}
		b.Entry = append(b.Entry, fhir.Entry{FullURL: s.fullURL("AuditEvent", r.ID), Resource: body, Search: &fhir.EntrySearch{Mode: "match"}})
	}
	s.writeBundle(c, b)
	return nil
}
