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
	// Keys are matched exactly (maps, not structs: encoding/json matches
	// struct fields case-insensitively), and a Parameters body must have
	// one reading, as a resource must.
	var head map[string]json.RawMessage
	var rt string
	if json.Unmarshal(body, &head) != nil || json.Unmarshal(head["resourceType"], &rt) != nil || rt != "Parameters" {
		return in, nil // not Parameters: the resource itself, validated as sent
	}
	if issues := fhir.CheckJSON(body, "Parameters"); issues != nil {
		return nil, fhir.Invalid(issues)
	}
	var params []map[string]json.RawMessage
	if p, ok := head["parameter"]; ok && json.Unmarshal(p, &params) != nil {
		return nil, fhir.At(fhir.KindInvalid, "Parameters.parameter", "Parameters.parameter must be an array of parameters")
	}
	in.resource = nil
	for i, p := range params {
		expr := fmt.Sprintf("Parameters.parameter[%d]", i)
		var name string
		var value *string
		valueKey := ""
		malformed := json.Unmarshal(p["name"], &name) != nil
		for k, raw := range p {
			switch k {
			case "name", "resource":
			case "valueUri", "valueCanonical", "valueCode":
				var v string
				if value != nil || json.Unmarshal(raw, &v) != nil {
					malformed = true
				}
				value, valueKey = &v, k
			default:
				malformed = true
			}
		}
		res := p["resource"]
		switch {
		case malformed:
			return nil, fhir.At(fhir.KindInvalid, expr, "Unknown or malformed $validate parameter %q: the parameters are resource, profile (valueUri or valueCanonical) and mode (valueCode)", clip(name))
		case name == "resource" && len(bytes.TrimSpace(res)) > 0 && in.resource == nil:
			in.resource = res
		case name == "resource":
			return nil, fhir.At(fhir.KindInvalid, expr, "Give exactly one resource parameter, holding the resource to validate")
		case name == "profile" && value != nil && (valueKey == "valueUri" || valueKey == "valueCanonical"):
			in.profiles = append(in.profiles, *value)
		case name == "mode" && value != nil && valueKey == "valueCode":
			switch *value {
			case "create", "update":
				in.mode = *value
			case "delete":
				return nil, fhir.At(fhir.KindInvalid, expr+".valueCode", "mode delete is not supported: $validate checks content; a delete has none")
			default:
				return nil, fhir.At(fhir.KindInvalid, expr+".valueCode", "mode must be create or update")
			}
		default:
			return nil, fhir.At(fhir.KindInvalid, expr, "Unknown or malformed $validate parameter %q: the parameters are resource, profile (valueUri or valueCanonical) and mode (valueCode)", clip(name))
		}
	}
	if in.resource == nil {
		return nil, fhir.At(fhir.KindInvalid, "Parameters.parameter", "The resource parameter, holding the resource to validate, is required")
	}
	return in, nil
}
