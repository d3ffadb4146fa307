package handlers

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"cpis/handlers/registry"
	"cpis/profiles/quality"
)

// dataQuality serves GET [base]/$data-quality: the calling local
// authority's data-quality findings as one OperationOutcome.
func (s *Server) dataQuality(c *gin.Context) error {
	if err := registry.MayReadQuality(principal(c)); err != nil {
		return err
	}
	findings, err := s.reg.DataQuality(c.Request.Context(), caller(c, false), s.Quality)
	if err != nil {
		return err
	}
	s.writeJSON(c, http.StatusOK, quality.Outcome(findings).JSON())
	return nil
}
