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
// plan's period is over, without being written again. (Only Flags have an
// Ends.)
func (s *Server) body(r store.Record) []byte {
	return profiles.FlagAt(r.Body, r.Ends, s.now())
}

// expired reports whether a record's period ended before the retention
// window: it is treated as gone even before the sweeper purges it.
func (s *Server) expired(r store.Record) bool {
	return !r.End.IsZero() && r.End.Before(s.retainedSince())
}

// readTarget runs what every read of one resource shares: the caller's
// permission to read the type, and the id. A silent read must name the
// patient: reads, vreads and history by id are always audited, so a silent
// switch (silent=true or IsUnscheduledAccessEvent: false) is refused, and a
// user who may read only silently (B0170) may not read by id. (Ids are
// chosen by local authorities and can be guessed; a silent read by id
// would show a child's NHS number with no access notification.)
func (s *Server) readTarget(c *gin.Context, typ string) (p *auth.Principal, id string, err error) {
	p = principal(c)
	silentParam, has := c.GetQuery("silent")
	silent, err := silentMode(c, silentParam, has)
	if err != nil {
		return nil, "", err
	}
	if silent {
		return nil, "", fhir.Errorf(fhir.CodeAccessDenied, "Access has been denied to process this request: a silent read must name the patient; search by NHS number with silent=true (reads by id are always audited)")
	}
	if err = mayRead(p, typ, false); err != nil {
		return nil, "", err
	}
	id, err = idParam(c)
	return p, id, err
}

func idParam(c *gin.Context) (string, error) {
	id := c.Param("id")
	if !fhir.ValidID(id) {
		return "", fhir.At(fhir.CodeInvalidValue, "id", "%q is not a valid resource id", clip(id))
	}
	return id, nil
}

// gone answers a read of a deleted version: 410 with its version headers.
func gone(c *gin.Context, r store.Record) error {
	versionHeaders(c, r)
	return fhir.Errorf(fhir.CodeNotFound, "%s/%s was deleted at version %d", r.Type, r.ID, r.Version).WithStatus(http.StatusGone)
}

// read serves GET /{type}/{id}.
func (s *Server) read(typ string) gin.HandlerFunc {
	return s.handle(func(c *gin.Context) error {
		p, id, err := s.readTarget(c, typ)
		if err != nil {
			return err
		}
		r, err := s.Store.Get(c.Request.Context(), typ, id)
		if err != nil {
			return err
		}
		if err := s.visible(p, r); err != nil {
			return err
		}
		if r.Deleted {
			return gone(c, r)
		}
		if err := s.auditRead(c, p, "read", r); err != nil {
			return err
		}
		s.writeRecord(c, http.StatusOK, r, s.body(r))
		return nil
	})
}

// visible checks a local authority may see the record (another's is not
// found, exactly as a missing id) and that it has not passed retention.
func (s *Server) visible(p *auth.Principal, r store.Record) error {
	if err := mayReadRecord(p, r); err != nil {
		return err
	}
	if s.expired(r) {
		return fhir.Errorf(fhir.CodeNotFound, "Resource not found")
	}
	return nil
}

// auditRead audits a read of one patient record: never silent.
func (s *Server) auditRead(c *gin.Context, p *auth.Principal, interaction string, r store.Record) error {
	if !patientType(r.Type) || r.Subject == "" {
		return nil
	}
	t := touched{}
	t.add(r)
	return s.recordAccess(c, p, false, interaction, "", r.Type+"/"+r.ID, t)
}

// vread serves GET /{type}/{id}/_history/{vid}. Who may see it is decided
// by the current version.
func (s *Server) vread(typ string) gin.HandlerFunc {
	return s.handle(func(c *gin.Context) error {
		p, id, err := s.readTarget(c, typ)
		if err != nil {
			return err
		}
		vid, err := strconv.ParseInt(c.Param("vid"), 10, 64)
		if err != nil || vid < 1 {
			return fhir.At(fhir.CodeInvalidValue, "vid", "The version id must be a positive whole number")
		}
		cur, err := s.Store.Get(c.Request.Context(), typ, id)
		if err != nil {
			return err
		}
		if err := s.visible(p, cur); err != nil {
			return err
		}
		if !p.IsLA() && vid < cur.Version {
			tomb, deleted, err := s.deletedSince(c, typ, id, vid, cur)
			if err != nil {
				return err
			}
			if deleted {
				return gone(c, tomb)
			}
		}
		r, err := s.Store.GetVersion(c.Request.Context(), typ, id, vid)
		if err != nil {
			return err
		}
		if r.Deleted {
			return gone(c, r)
		}
		if err := s.auditRead(c, p, "vread", r); err != nil {
			return err
		}
		s.writeRecord(c, http.StatusOK, r, s.body(r))
		return nil
	})
}

// history serves GET /{type}/{id}/_history: every version, newest first.
func (s *Server) history(typ string) gin.HandlerFunc {
	return s.handle(func(c *gin.Context) error {
		p, id, err := s.readTarget(c, typ)
		if err != nil {
			return err
		}
		recs, err := s.Store.History(c.Request.Context(), typ, id)
		if err != nil {
			return err
		}
		cur := recs[0]
		// The current version decides who may see the history.
		if err := s.visible(p, cur); err != nil {
			return err
		}
		if !p.IsLA() {
			// A delete is a plan recorded in error: clinicians see only the
			// versions written since the last one.
			if recs = sinceDelete(recs); len(recs) == 0 {
				return gone(c, cur)
			}
		}
		if err := s.auditHistory(c, p, recs); err != nil {
			return err
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
		return nil
	})
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

// deletedSince reports whether typ/id was deleted after version vid (cur is
// its current version): then that version is gone for clinicians, as the
// delete said the plan was recorded in error. It returns the tombstone.
func (s *Server) deletedSince(c *gin.Context, typ, id string, vid int64, cur store.Record) (store.Record, bool, error) {
	if cur.Deleted {
		return cur, true, nil
	}
	recs, err := s.Store.History(c.Request.Context(), typ, id)
	if err != nil {
		return store.Record{}, false, err
	}
	for _, r := range recs {
		if r.Deleted && r.Version > vid {
			return r, true, nil
		}
	}
	return store.Record{}, false, nil
}

// auditHistory audits a history read: every patient any shown version is
// about (a plan's NHS number may have been corrected), once each.
func (s *Server) auditHistory(c *gin.Context, p *auth.Principal, recs []store.Record) error {
	cur := recs[0]
	if !patientType(cur.Type) {
		return nil
	}
	t := touched{}
	for _, r := range recs {
		if r.Subject == "" || r.Deleted {
			continue
		}
		if _, ok := t[r.Subject]; !ok {
			t.add(r)
		}
	}
	return s.recordAccess(c, p, false, "history-instance", "", cur.Type+"/"+cur.ID, t)
}
