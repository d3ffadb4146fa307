package handlers

import (
	"net/http"
	"sort"

	"github.com/gin-gonic/gin"

	"cpis/fhir"
	"cpis/profiles"
)

// readConformance serves GET /{StructureDefinition|CodeSystem|ValueSet}/{id}:
// the server's own conformance resources, to any caller with a token.
func (s *Server) readConformance(typ string) gin.HandlerFunc {
	return func(c *gin.Context) {
		id, err := idParam(c)
		if err != nil {
			s.fail(c, err)
			return
		}
		if err := readSubset(c, typ); err != nil {
			s.fail(c, err)
			return
		}
		a, ok := s.Profiles.Artifact(typ, id)
		if !ok {
			s.fail(c, fhir.Errorf(fhir.KindNotFound, "No %s with id %q: this server holds only the CP-IS definitions (GET %s to list them)", typ, id, typ))
			return
		}
		s.writeJSON(c, http.StatusOK, subsetted(c, typ, a.Body))
	}
}

// searchConformance serves GET /{type}?url=… (and _id): a searchset of
// the server's conformance resources of that type.
func (s *Server) searchConformance(typ string) gin.HandlerFunc {
	return func(c *gin.Context) {
		sr, err := s.parseSearch(c, typ)
		if err != nil {
			s.fail(c, err)
			return
		}
		url, ids := "", map[string]bool{}
		for _, prm := range sr.applied {
			switch sr.spec.param(prm.Raw).Kind {
			case paramURL:
				if url != "" || len(prm.Values) != 1 {
					s.fail(c, fhir.At(fhir.KindInvalidSearch, "url", "Search by one url at a time"))
					return
				}
				url = prm.Values[0]
			case paramID:
				for _, id := range prm.Values {
					ids[id] = true
				}
			}
		}
		var found []*profiles.Artifact
		for _, a := range s.Profiles.Search(typ, url) {
			if len(ids) == 0 || ids[a.ID] {
				found = append(found, a)
			}
		}
		sort.Slice(found, func(i, j int) bool { return found[i].ID < found[j].ID })
		total := len(found)
		if sr.q.Cursor != "" {
			i := sort.Search(len(found), func(i int) bool { return found[i].ID > sr.q.Cursor })
			found = found[i:]
		}
		limit := sr.q.Count
		if sr.q.Summary == "count" {
			limit = 0
		}
		b := &fhir.Bundle{Type: "searchset", Total: &total, Timestamp: fhir.Instant(s.now())}
		b.Link = append(b.Link, fhir.Link{Relation: "self", URL: s.selfLink(typ, sr, searchCursorTTL)})
		if limit > 0 && len(found) > limit {
			found = found[:limit]
			b.Link = append(b.Link, fhir.Link{Relation: "next", URL: s.pageLink(typ, sr, found[limit-1].ID, searchCursorTTL)})
		} else if limit == 0 {
			found = nil
		}
		for _, a := range found {
			b.Entry = append(b.Entry, fhir.Entry{FullURL: s.fullURL(typ, a.ID), Resource: a.Body, Search: &fhir.EntrySearch{Mode: "match"}})
		}
		if len(sr.ignored) > 0 {
			b.Entry = append(b.Entry, ignoredEntry(sr))
		}
		s.writeBundle(c, b)
	}
}
