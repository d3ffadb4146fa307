package handlers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"

	"cpis/fhir"
)

// validateInput is what a $validate request asks: the resource's bytes,
// the profiles named, and the mode.
type validateInput struct {
	resource []byte
	profiles []string
	mode     string // create or update
}

// validate serves POST /{type}/$validate and POST /{type}/{id}/$validate.
// Any caller with a valid token may validate; nothing is written, and the
// stored resource is never read, so the answer is the same whether it
// exists and whoever manages it. The answer is 200 with every problem in
// one OperationOutcome; 4xx only when the request itself is malformed.
func (s *Server) validate(typ string) gin.HandlerFunc {
	return func(c *gin.Context) {
		id := ""
		if c.Param("id") != "" {
			var err error
			if id, err = idParam(c); err != nil {
				s.fail(c, err)
				return
			}
		}
		body, err := s.readBody(c, s.Limits.MaxResourceBytes)
		if err != nil {
			s.fail(c, err)
			return
		}
		in, err := validateRequest(body, id)
		if err != nil {
			s.fail(c, err)
			return
		}
		res, issues := s.validateResource(in.resource, typ, in.profiles...)
		if res != nil && in.mode == "update" {
			switch got := res.ID(); {
			case got == "":
				issues = append(issues, fhir.Issue{Kind: fhir.KindInvalid, Expression: []string{typ + ".id"},
					Diagnostics: "An update needs the resource's id"})
			case id != "" && got != id:
				issues = append(issues, fhir.Issue{Kind: fhir.KindInvalid, Expression: []string{typ + ".id"},
					Diagnostics: fmt.Sprintf("The resource id must match the URL (%s/%s)", typ, id)})
			}
		}
		if len(issues) == 0 {
			profile := s.Profiles.ProfileOf(typ)
			issues = []fhir.Issue{{Severity: "information", Type: "informational",
				Diagnostics: fmt.Sprintf("Valid: the %s conforms to FHIR R4 and %s", typ, profile)}}
		}
		s.writeJSON(c, http.StatusOK, outcomeJSON(issues))
	}
}

// validateRequest reads a $validate body: the resource itself, or a
// Parameters resource with resource (required), profile and mode. The
// instance form (id set) defaults to mode update; the type form to create.
func validateRequest(body []byte, id string) (*validateInput, error) {
	in := &validateInput{resource: body, mode: "create"}
	if id != "" {
		in.mode = "update"
	}
	var head struct {
		ResourceType string `json:"resourceType"`
		Parameter    []struct {
			Name           string          `json:"name"`
			Resource       json.RawMessage `json:"resource"`
			ValueURI       *string         `json:"valueUri"`
			ValueCanonical *string         `json:"valueCanonical"`
			ValueCode      *string         `json:"valueCode"`
		} `json:"parameter"`
	}
	if json.Unmarshal(body, &head) != nil || head.ResourceType != "Parameters" {
		return in, nil // not Parameters: the resource itself, validated as sent
	}
	in.resource = nil
	for i, p := range head.Parameter {
		expr := fmt.Sprintf("Parameters.parameter[%d]", i)
		switch {
		case p.Name == "resource" && len(bytes.TrimSpace(p.Resource)) > 0 && in.resource == nil:
			in.resource = p.Resource
		case p.Name == "resource":
			return nil, fhir.At(fhir.KindInvalid, expr, "Give exactly one resource parameter, holding the resource to validate")
		case p.Name == "profile" && p.ValueURI != nil:
			in.profiles = append(in.profiles, *p.ValueURI)
		case p.Name == "profile" && p.ValueCanonical != nil:
			in.profiles = append(in.profiles, *p.ValueCanonical)
		case p.Name == "mode" && p.ValueCode != nil:
			switch *p.ValueCode {
			case "create", "update":
				in.mode = *p.ValueCode
			case "delete":
				return nil, fhir.At(fhir.KindInvalid, expr+".valueCode", "mode delete is not supported: $validate checks content; a delete has none")
			default:
				return nil, fhir.At(fhir.KindInvalid, expr+".valueCode", "mode must be create or update")
			}
		default:
			return nil, fhir.At(fhir.KindInvalid, expr, "Unknown or malformed $validate parameter %q: the parameters are resource, profile (valueUri or valueCanonical) and mode (valueCode)", clip(p.Name))
		}
	}
	if in.resource == nil {
		return nil, fhir.At(fhir.KindInvalid, "Parameters.parameter", "The resource parameter, holding the resource to validate, is required")
	}
	return in, nil
}
