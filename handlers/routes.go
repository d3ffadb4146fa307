package handlers

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"cpis/auth"
	"cpis/fhir"
)

// routes lists the whole API.
func (s *Server) routes(e *gin.Engine) {
	// Every request, also preflights and unknown paths: request id, access
	// log and recovery; CORS; then the checks that need no route: header
	// size (431), the national headers (TraceID, IsUnscheduledAccessEvent),
	// request body decoding (gzip) and the request deadline. Compression
	// wraps the whole engine (New).
	e.Use(s.requestID, s.noStore, s.accessLog, s.recovery)
	e.Use(headOnly) // HEAD: every GET route, its body dropped (conditional.go)
	if len(s.corsOrigins) > 0 {
		e.Use(s.cors)
	}
	e.Use(s.headerLimit, s.nationalHeaders, s.decodeBody)
	if s.RequestTimeout > 0 {
		e.Use(s.deadline)
	}
	e.NoRoute(func(c *gin.Context) {
		s.fail(c, fhir.Errorf(fhir.KindNotFound, "No such endpoint; the FHIR base is %s", s.basePath))
	})
	e.NoMethod(func(c *gin.Context) {
		s.fail(c, fhir.Errorf(fhir.KindMethodNotAllowed, "Method %s is not supported here", c.Request.Method))
	})

	root := headRoutes{&e.RouterGroup}
	root.GET("/healthz", s.healthz)
	root.GET("/readyz", s.readyz)
	if s.MetricsHandler != nil {
		root.GET("/metrics", gin.WrapH(s.MetricsHandler))
	}

	api := root.Group(s.basePath, s.negotiate)
	api.GET("/metadata", s.metadata)

	r := api.Group("", auth.Middleware(s.Verifier, s.fail))

	// A fixed answer through the whole stack: checks a token, and is the
	// ceiling the load command measures the other routes against.
	r.GET("/_ping", s.ping)

	// Transaction and batch Bundles: local authorities' uploads.
	r.POST("", s.postBundle)
	r.POST("/", s.postBundle)

	// Flag: the alert, derived from EpisodeOfCare; read-only.
	r.GET("/Flag", s.search("Flag"))
	r.POST("/Flag/_search", s.search("Flag"))
	r.GET("/Flag/:id", s.read("Flag"))
	r.GET("/Flag/_history", s.typeHistory("Flag"))
	r.GET("/Flag/:id/_history", s.history("Flag"))
	r.GET("/Flag/:id/_history/:vid", s.vread("Flag"))
	flagsDerived := s.notAllowed("Flags are derived from EpisodeOfCare by the server: write the EpisodeOfCare instead")
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		r.Handle(m, "/Flag", flagsDerived)
		r.Handle(m, "/Flag/:id", flagsDerived)
	}

	// CareTeam: the national CP-IS API's answer about a plan, rendered from
	// the EpisodeOfCare with its local authority's numbers; read-only.
	r.GET("/CareTeam", s.search("CareTeam"))
	r.POST("/CareTeam/_search", s.search("CareTeam"))
	r.GET("/CareTeam/_history", s.handle(func(*gin.Context) error {
		return fhir.Errorf(fhir.KindNotFound, "CareTeams have no history: they are rendered from the plan; read EpisodeOfCare/_history as the plan's local authority")
	}))
	r.GET("/CareTeam/:id", s.read("CareTeam"))
	r.GET("/CareTeam/:id/_history", s.history("CareTeam"))
	r.GET("/CareTeam/:id/_history/:vid", s.vread("CareTeam"))
	careTeamsDerived := s.notAllowed("CareTeams are rendered from EpisodeOfCare by the server: write the EpisodeOfCare instead")
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		r.Handle(m, "/CareTeam", careTeamsDerived)
		r.Handle(m, "/CareTeam/:id", careTeamsDerived)
	}

	// EpisodeOfCare: the plans local authorities write.
	r.GET("/EpisodeOfCare", s.search("EpisodeOfCare"))
	r.POST("/EpisodeOfCare/_search", s.search("EpisodeOfCare"))
	r.POST("/EpisodeOfCare", s.create("EpisodeOfCare"))
	r.PUT("/EpisodeOfCare", s.conditionalUpdate("EpisodeOfCare"))
	r.GET("/EpisodeOfCare/:id", s.read("EpisodeOfCare"))
	r.PUT("/EpisodeOfCare/:id", s.update("EpisodeOfCare"))
	r.DELETE("/EpisodeOfCare/:id", s.remove("EpisodeOfCare"))
	r.GET("/EpisodeOfCare/_history", s.typeHistory("EpisodeOfCare"))
	r.GET("/EpisodeOfCare/:id/_history", s.history("EpisodeOfCare"))
	r.GET("/EpisodeOfCare/:id/_history/:vid", s.vread("EpisodeOfCare"))
	r.PATCH("/EpisodeOfCare/:id", s.patch("EpisodeOfCare"))

	// Organization: the local authority and its contact numbers.
	r.GET("/Organization", s.search("Organization"))
	r.POST("/Organization/_search", s.search("Organization"))
	r.POST("/Organization", s.create("Organization"))
	r.PUT("/Organization", s.conditionalUpdate("Organization"))
	r.GET("/Organization/:id", s.read("Organization"))
	r.PUT("/Organization/:id", s.update("Organization"))
	r.GET("/Organization/_history", s.typeHistory("Organization"))
	r.GET("/Organization/:id/_history", s.history("Organization"))
	r.GET("/Organization/:id/_history/:vid", s.vread("Organization"))
	r.PATCH("/Organization/:id", s.patch("Organization"))

	// AuditEvent: access history and the local authority's feed.
	r.GET("/AuditEvent", s.handle(s.searchAudit))
	r.POST("/AuditEvent/_search", s.handle(s.searchAudit))

	// Subscription: a local authority's notification subscriptions, with
	// the backport's $status and $events.
	s.subscriptionRoutes(r)

	// $data-quality: a local authority's report on its own data.
	r.GET("/$data-quality", s.handle(s.dataQuality))

	// $export: a local authority's bulk export of its own records (FHIR
	// Bulk Data Access, system level). The files are served outside the
	// JSON negotiation: a client asks for them as application/fhir+ndjson.
	r.GET("/$export", s.handle(s.exportKickOff))
	r.POST("/$export", s.handle(s.exportKickOff))
	r.GET(exportStatusPath+":id", s.handle(s.exportStatus))
	r.DELETE(exportStatusPath+":id", s.handle(s.exportCancel))
	for _, p := range []string{"/Patient/$export", "/Group/:id/$export"} {
		r.GET(p, s.handle(s.exportNotOffered))
		r.POST(p, s.handle(s.exportNotOffered))
	}
	files := e.Group(s.basePath, auth.Middleware(s.Verifier, s.fail))
	files.GET(exportFilePath+":id/:name", s.handle(s.exportFile))

	// $validate: any caller with a token; writes nothing, reads nothing.
	for _, typ := range []string{"EpisodeOfCare", "Organization", "Flag", "AuditEvent"} {
		r.POST("/"+typ+"/$validate", s.validate(typ))
		r.POST("/"+typ+"/:id/$validate", s.validate(typ))
	}

	// The CP-IS definitions: any caller with a token.
	for _, typ := range []string{"StructureDefinition", "CodeSystem", "ValueSet"} {
		r.GET("/"+typ, s.searchConformance(typ))
		r.GET("/"+typ+"/:id", s.readConformance(typ))
	}
}
