package auth

import (
	"strings"

	"github.com/gin-gonic/gin"
)

const principalKey = "cpis.principal"

// Middleware verifies the bearer token of every request it guards and puts
// the principal in the gin context. On failure it calls fail, which must
// write the response, and stops the chain.
func Middleware(v *Verifier, fail func(c *gin.Context, err error)) gin.HandlerFunc {
	return func(c *gin.Context) {
		scheme, token, _ := strings.Cut(c.GetHeader("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			fail(c, refuse("no bearer access token", nil))
			c.Abort()
			return
		}
		p, err := v.Verify(c.Request.Context(), strings.TrimSpace(token))
		if err != nil {
			fail(c, err)
			c.Abort()
			return
		}
		c.Set(principalKey, p)
		c.Next()
	}
}

// FromContext returns the principal the middleware verified, or nil.
func FromContext(c *gin.Context) *Principal {
	p, _ := c.Get(principalKey)
	pr, _ := p.(*Principal)
	return pr
}
