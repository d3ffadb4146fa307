package handlers

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"cpis/fhir"
	"cpis/handlers/registry"
	"cpis/store"
)

// readTarget runs what every read of one resource shares: the silent
// switch, the caller's permission to read the type, and the id. A read by
// id is never silent (the registry refuses it: a silent read must name the
// patient); it is refused here first, before the id is read.
func readTarget(c *gin.Context, typ string) (registry.Caller, string, error) {
	silentParam, has := c.GetQuery("silent")
	silent, err := silentMode(c, silentParam, has)
	if err != nil {
		return registry.Caller{}, "", err
	}
	who := caller(c, silent)
	if err := registry.ByID(who, typ); err != nil {
		return registry.Caller{}, "", err
	}
	id, err := idParam(c)
	if err != nil {
		return registry.Caller{}, "", err
	}
	return who, id, readSubset(c, typ)
}

func idParam(c *gin.Context) (string, error) {
	id := c.Param("id")
	if !fhir.ValidID(id) {
		return "", fhir.At(fhir.KindInvalid, "id", "%q is not a valid resource id", clip(id))
	}
	return id, nil
}

// shown answers a registry read: the record (304 if the client's copy is
// current; as the request's _summary or _elements ask), or its error; a
// deleted version's error carries its version headers. The registry has
// audited the read before this answer, whichever it is.
func (s *Server) shown(c *gin.Context, r store.Record, err error) error {
	if err != nil {
		if r.Deleted {
			versionHeaders(c, r)
		}
		return err
	}
	if s.notModified(c, r) {
		answerNotModified(c, r)
		return nil
	}
	s.writeRecord(c, http.StatusOK, r, subsetted(c, r.Type, r.Body))
	return nil
}

// read serves GET /{type}/{id}.
func (s *Server) read(typ string) gin.HandlerFunc {
	return s.handle(func(c *gin.Context) error {
		who, id, err := readTarget(c, typ)
		if err != nil {
			return err
		}
		r, err := s.reg.Read(c.Request.Context(), who, typ, id)
		return s.shown(c, r, err)
	})
}

// vread serves GET /{type}/{id}/_history/{vid}.
func (s *Server) vread(typ string) gin.HandlerFunc {
	return s.handle(func(c *gin.Context) error {
		who, id, err := readTarget(c, typ)
		if err != nil {
			return err
		}
		vid, err := strconv.ParseInt(c.Param("vid"), 10, 64)
		if err != nil || vid < 1 {
			return fhir.At(fhir.KindInvalid, "vid", "The version id must be a positive whole number")
		}
		r, err := s.reg.VRead(c.Request.Context(), who, typ, id, vid)
		return s.shown(c, r, err)
	})
}

// history serves GET /{type}/{id}/_history: every version, newest first.
func (s *Server) history(typ string) gin.HandlerFunc {
	return s.handle(func(c *gin.Context) error {
		who, id, err := readTarget(c, typ)
		if err != nil {
			return err
		}
		hq, err := s.parseHistory(c.Request.URL.Query(), preferStrict(c), false)
		if err != nil {
			return err
		}
		recs, err := s.reg.HistoryIn(c.Request.Context(), who, typ, id, hq.window)
		if err != nil {
			if len(recs) == 1 && recs[0].Deleted {
				versionHeaders(c, recs[0])
			}
			return err
		}
		total := len(recs)
		b := &fhir.Bundle{Type: "history", Total: &total, Timestamp: fhir.Instant(s.now()),
			Link: []fhir.Link{{Relation: "self", URL: s.fullURL(typ, id) + "/_history" + hq.selfQuery()}}}
		for i, r := range recs {
			e := fhir.Entry{FullURL: s.fullURL(typ, id)}
			method, status := http.MethodPut, "200 OK"
			if r.Deleted {
				method, status = http.MethodDelete, "204 No Content"
			} else {
				e.Resource = r.Body
				if i == len(recs)-1 || recs[i+1].Deleted {
					status = "201 Created"
				}
			}
			e.Request = &fhir.EntryRequest{Method: method, URL: typ + "/" + id}
			e.Response = &fhir.EntryResponse{Status: status, Etag: etag(r.Version), LastModified: fhir.Instant(r.Updated)}
			b.Entry = append(b.Entry, e)
		}
		s.writeBundle(c, b)
		return nil
	})
}
