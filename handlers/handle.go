package handlers

import "github.com/gin-gonic/gin"

// handle adapts a handler that returns an error: a non-nil error becomes the
// response through fail, the one place errors turn into OperationOutcomes.
func (s *Server) handle(h func(c *gin.Context) error) gin.HandlerFunc {
	return func(c *gin.Context) {
		if err := h(c); err != nil {
			s.fail(c, err)
		}
	}
}
