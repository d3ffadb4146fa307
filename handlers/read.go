package handlers

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"cpis/auth"
	"cpis/fhir"
	"cpis/profiles"
	"cpis/store"
)

// body is what a record shows now: a derived Flag turns inactive when its
// plan's period is over, without being written again.
func (s *Server) body(r store.Record) []byte {
	return profiles.Pick(r.Body, r.Ended, r.Ends, s.now())
}

// expired reports whether a record's period ended before the retention
// window: it is treated as gone even before the sweeper purges it.
func (s *Server) expired(r store.Record) bool {
	return !r.End.IsZero() && r.End.Before(s.retainedSince())
}

// readCheck runs the checks every read of one resource shares: the caller
// may read the type in this mode, and may see this record.
func (s *Server) readCheck(c *gin.Context, typ string) (*auth.Principal, bool, error) {
	p := principal(c)
	silentParam, has := c.GetQuery("silent")
	silent, err := silentMode(c, silentParam, has)
	if err != nil {
		return nil, false, err
	}
	if err := mayRead(p, typ, silent); err != nil {
		return nil, false, err
	}
	return p, silent, nil
}

func idParam(c *gin.Context) (string, error) {
	id := c.Param("id")
	if !fhir.ValidID(id) {
		return "", fhir.At(fhir.CodeInvalidValue, "id", "%q is not a valid resource id", clip(id))
	}
	return id, nil
}

// read serves GET /{type}/{id}.
func (s *Server) read(typ string) gin.HandlerFunc {
	return func(c *gin.Context) {
		p, silent, err := s.readCheck(c, typ)
		if err != nil {
			s.fail(c, err)
			return
		}
		id, err := idParam(c)
		if err != nil {
			s.fail(c, err)
			return
		}
		r, err := s.Store.Get(c.Request.Context(), typ, id)
		if err != nil {
			s.fail(c, err)
			return
		}
		if err := s.visible(p, r); err != nil {
			s.fail(c, err)
			return
		}
		if r.Deleted {
			versionHeaders(c, r)
			s.fail(c, fhir.Errorf(fhir.CodeNotFound, "%s/%s was deleted", typ, id).WithStatus(http.StatusGone))
			return
		}
		if err := s.auditRead(c, p, silent, "read", r); err != nil {
			s.fail(c, err)
			return
		}
		s.writeRecord(c, http.StatusOK, r, s.body(r))
	}
}

// visible checks a local authority may see the record and that it has not
// passed retention.
func (s *Server) visible(p *auth.Principal, r store.Record) error {
	if err := mayReadRecord(p, r); err != nil {
		return err
	}
	if s.expired(r) {
		return fhir.Errorf(fhir.CodeNotFound, "Resource not found")
	}
	return nil
}

// auditRead audits a read of one patient record.
func (s *Server) auditRead(c *gin.Context, p *auth.Principal, silent bool, interaction string, r store.Record) error {
	if !patientType(r.Type) || r.Subject == "" {
		return nil
	}
	t := touched{}
	t.add(r.Subject, r.Owner)
	return s.recordAccess(c, p, silent, interaction, "", r.Type+"/"+r.ID, t)
}

// vread serves GET /{type}/{id}/_history/{vid}.
func (s *Server) vread(typ string) gin.HandlerFunc {
	return func(c *gin.Context) {
		p, silent, err := s.readCheck(c, typ)
		if err != nil {
			s.fail(c, err)
			return
		}
		id, err := idParam(c)
		if err != nil {
			s.fail(c, err)
			return
		}
		vid, err := strconv.ParseInt(c.Param("vid"), 10, 64)
		if err != nil || vid < 1 {
			s.fail(c, fhir.At(fhir.CodeInvalidValue, "vid", "The version id must be a positive whole number"))
			return
		}
		cur, err := s.Store.Get(c.Request.Context(), typ, id)
		if err != nil {
			s.fail(c, err)
			return
		}
		if err := s.visible(p, cur); err != nil {
			s.fail(c, err)
			return
		}
		r, err := s.Store.GetVersion(c.Request.Context(), typ, id, vid)
		if err != nil {
			s.fail(c, err)
			return
		}
		if r.Deleted {
			versionHeaders(c, r)
			s.fail(c, fhir.Errorf(fhir.CodeNotFound, "%s/%s was deleted at version %d", typ, id, vid).WithStatus(http.StatusGone))
			return
		}
		if err := s.auditRead(c, p, silent, "vread", r); err != nil {
			s.fail(c, err)
			return
		}
		s.writeRecord(c, http.StatusOK, r, s.body(r))
	}
}

// history serves GET /{type}/{id}/_history: every version, newest first.
func (s *Server) history(typ string) gin.HandlerFunc {
	return func(c *gin.Context) {
		p, silent, err := s.readCheck(c, typ)
		if err != nil {
			s.fail(c, err)
			return
		}
		id, err := idParam(c)
		if err != nil {
			s.fail(c, err)
			return
		}
		recs, err := s.Store.History(c.Request.Context(), typ, id)
		if err != nil {
			s.fail(c, err)
			return
		}
		// The current version decides who may see the history.
		if err := s.visible(p, recs[0]); err != nil {
			s.fail(c, err)
			return
		}
		if err := s.auditRead(c, p, silent, "history-instance", recs[0]); err != nil {
			s.fail(c, err)
			return
		}
		total := len(recs)
		b := &fhir.Bundle{Type: "history", Total: &total, Timestamp: fhir.Instant(s.now()),
			Link: []fhir.Link{{Relation: "self", URL: s.fullURL(typ, id) + "/_history"}}}
		for i, r := range recs {
			e := fhir.Entry{FullURL: s.fullURL(typ, id)}
			method, status := http.MethodPut, "200 OK"
			if r.Deleted {
				method, status = http.MethodDelete, "204 No Content"
			} else {
				e.Resource = s.body(r)
				if i == len(recs)-1 || recs[i+1].Deleted {
					status = "201 Created"
				}
			}
			e.Request = &fhir.EntryRequest{Method: method, URL: typ + "/" + id}
			e.Response = &fhir.EntryResponse{Status: status, Etag: etag(r.Version), LastModified: fhir.Instant(r.Updated)}
			b.Entry = append(b.Entry, e)
		}
		s.writeBundle(c, b)
	}
}
