package handlers

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"cpis/fhir"
	"cpis/handlers/notify"
)

// Subscriptions: a local authority's notification subscriptions (the
// Subscriptions R5 Backport for R4, rest-hook). The use-cases are the
// notify package's; these handlers parse and render.

// subscriptionRoutes adds the Subscription routes.
func (s *Server) subscriptionRoutes(r headRoutes) {
	if s.Notify == nil {
		off := s.handle(func(*gin.Context) error {
			return fhir.Errorf(fhir.KindNotImplemented, "This server's database does not keep subscriptions")
		})
		for _, p := range []string{"/Subscription", "/Subscription/:id", "/Subscription/:id/$status", "/Subscription/:id/$events"} {
			r.Any(p, off)
		}
		return
	}
	r.GET("/Subscription", s.handle(s.subSearch))
	r.POST("/Subscription", s.handle(s.subCreate))
	r.GET("/Subscription/:id", s.handle(s.subRead))
	r.PUT("/Subscription/:id", s.handle(s.subUpdate))
	r.DELETE("/Subscription/:id", s.handle(s.subDelete))
	r.GET("/Subscription/:id/$status", s.handle(s.subStatus))
	r.GET("/Subscription/:id/$events", s.handle(s.subEvents))
}

func (s *Server) writeSub(c *gin.Context, status int, sub notify.Sub) {
	c.Header("ETag", etag(sub.Version))
	c.Header("Last-Modified", httpDate(sub.Updated))
	s.writeJSON(c, status, sub.Body)
}

// subWritten answers a create or update as Prefer asks.
func (s *Server) subWritten(c *gin.Context, status int, sub notify.Sub) {
	c.Header("Location", s.fullURL("Subscription", sub.ID)+"/_history/"+strconv.FormatInt(sub.Version, 10))
	switch returnPref(c) {
	case "minimal":
		c.Header("ETag", etag(sub.Version))
		c.Status(status)
	case "OperationOutcome":
		c.Header("ETag", etag(sub.Version))
		s.writeJSON(c, status, outcomeJSON([]fhir.Issue{{Severity: "information", Type: "informational",
			Diagnostics: "The subscription is stored; its handshake follows"}}))
	default:
		s.writeSub(c, status, sub)
	}
}

func (s *Server) subBody(c *gin.Context) (*fhir.Resource, error) {
	body, err := s.readBody(c, s.Limits.MaxResourceBytes)
	if err != nil {
		return nil, err
	}
	// The base R4 specification only: the backport profile the resource
	// may claim is checked by the notify package's own rules.
	res, issues := s.Codec.Decode(body)
	if res != nil && res.Type != "Subscription" {
		return nil, fhir.At(fhir.KindInvalid, "resourceType", "Expected a Subscription, got %q", clip(res.Type))
	}
	if err := fhir.Invalid(issues); err != nil {
		return nil, err
	}
	if id := res.ID(); id != "" && !fhir.ValidID(id) {
		return nil, fhir.At(fhir.KindInvalid, "Subscription.id", "%q is not a valid resource id", clip(id))
	}
	return res, nil
}

func (s *Server) subCreate(c *gin.Context) error {
	p := principal(c)
	res, err := s.subBody(c)
	if err != nil {
		return err
	}
	sub, err := s.Notify.Create(c.Request.Context(), p, res)
	if err != nil {
		return err
	}
	s.subWritten(c, http.StatusCreated, sub)
	return nil
}

func (s *Server) subUpdate(c *gin.Context) error {
	p := principal(c)
	id, err := idParam(c)
	if err != nil {
		return err
	}
	im, err := ifMatch(c)
	if err != nil {
		return err
	}
	res, err := s.subBody(c)
	if err != nil {
		return err
	}
	sub, err := s.Notify.Update(c.Request.Context(), p, id, res, im)
	if err != nil {
		return err
	}
	s.subWritten(c, http.StatusOK, sub)
	return nil
}

func (s *Server) subRead(c *gin.Context) error {
	id, err := idParam(c)
	if err != nil {
		return err
	}
	sub, err := s.Notify.Read(c.Request.Context(), principal(c), id)
	if err != nil {
		return err
	}
	s.writeSub(c, http.StatusOK, sub)
	return nil
}

func (s *Server) subDelete(c *gin.Context) error {
	id, err := idParam(c)
	if err != nil {
		return err
	}
	if err := s.Notify.Delete(c.Request.Context(), principal(c), id); err != nil {
		return err
	}
	c.Status(http.StatusNoContent)
	return nil
}

func (s *Server) subSearch(c *gin.Context) error {
	subs, err := s.Notify.Search(c.Request.Context(), principal(c))
	if err != nil {
		return err
	}
	total := len(subs)
	b := &fhir.Bundle{Type: "searchset", Total: &total, Timestamp: fhir.Instant(s.now()),
		Link: []fhir.Link{{Relation: "self", URL: s.BaseURL + "/Subscription"}}}
	for _, sub := range subs {
		b.Entry = append(b.Entry, fhir.Entry{FullURL: s.fullURL("Subscription", sub.ID), Resource: sub.Body,
			Search: &fhir.EntrySearch{Mode: "match"}})
	}
	s.writeBundle(c, b)
	return nil
}

// subStatus serves $status: a searchset Bundle holding the status
// Parameters (type query-status).
func (s *Server) subStatus(c *gin.Context) error {
	id, err := idParam(c)
	if err != nil {
		return err
	}
	params, err := s.Notify.Status(c.Request.Context(), principal(c), id)
	if err != nil {
		return err
	}
	total := 1
	b := &fhir.Bundle{Type: "searchset", Total: &total, Timestamp: fhir.Instant(s.now()),
		Link:  []fhir.Link{{Relation: "self", URL: s.fullURL("Subscription", id) + "/$status"}},
		Entry: []fhir.Entry{{FullURL: "urn:uuid:" + s.NewID(), Resource: params, Search: &fhir.EntrySearch{Mode: "match"}}}}
	s.writeBundle(c, b)
	return nil
}

// subEvents serves $events: past events by number, as a notification
// Bundle (type query-event).
func (s *Server) subEvents(c *gin.Context) error {
	id, err := idParam(c)
	if err != nil {
		return err
	}
	since, err := notify.ParseNumber("eventsSinceNumber", c.Query("eventsSinceNumber"))
	if err != nil {
		return err
	}
	until, err := notify.ParseNumber("eventsUntilNumber", c.Query("eventsUntilNumber"))
	if err != nil {
		return err
	}
	body, err := s.Notify.Events(c.Request.Context(), principal(c), id, since, until, c.Query("content"))
	if err != nil {
		return err
	}
	s.writeJSON(c, http.StatusOK, body)
	return nil
}
