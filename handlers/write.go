package handlers

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"cpis/fhir"
	"cpis/handlers/registry"
)

// readBody reads a request body of at most limit bytes.
func (s *Server) readBody(c *gin.Context, limit int64) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, limit))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, fhir.Errorf(fhir.KindTooLarge, "The request body is larger than this server accepts (%d bytes)", limit)
	case bodyTimedOut(err):
		return nil, slowBody(err)
	case err != nil:
		return nil, fhir.Wrap(fhir.KindInvalid, err, "The request body could not be read")
	}
	return b, nil
}

// decodeResource decodes and validates a resource of the expected type,
// gathering every problem into one error. Every write (single, conditional
// and in Bundles) comes through here.
func (s *Server) decodeResource(body []byte, typ string) (*registry.Incoming, error) {
	res, issues := s.validateResource(body, typ)
	if err := fhir.Invalid(issues); err != nil {
		return nil, err
	}
	return s.reg.NewIncoming(res), nil
}

// decodeCheckedResource is decodeResource for a Bundle entry's resource,
// whose keys fhir.CheckJSON passed with the entry's.
func (s *Server) decodeCheckedResource(body []byte, typ string) (*registry.Incoming, error) {
	res, issues := s.Codec.DecodeChecked(body)
	if res != nil {
		issues = s.checkDecoded(res, typ, issues)
	}
	if err := fhir.Invalid(issues); err != nil {
		return nil, err
	}
	return s.reg.NewIncoming(res), nil
}

// validateResource is the one validation of a resource body, for writes
// and $validate: the base R4 specification through the codec, then the
// type's CP-IS profile and any profile the resource claims or the caller
// names. It returns every problem found; the resource is nil when the body
// is not a resource of type typ.
func (s *Server) validateResource(body []byte, typ string, named ...string) (*fhir.Resource, []fhir.Issue) {
	res, issues := s.Codec.Decode(body)
	if res == nil {
		return nil, issues
	}
	issues = s.checkDecoded(res, typ, issues, named...)
	if issues != nil && res.Type != typ {
		return nil, issues
	}
	return res, issues
}

// checkDecoded adds the checks after the base specification's (its
// issues): the type, the type's CP-IS profile and any profile the
// resource claims or the caller names, and the id.
func (s *Server) checkDecoded(res *fhir.Resource, typ string, issues []fhir.Issue, named ...string) []fhir.Issue {
	if res.Type != typ {
		return []fhir.Issue{{Kind: fhir.KindInvalid, Expression: []string{"resourceType"},
			Diagnostics: fmt.Sprintf("Expected a %s, got %q", typ, clip(res.Type))}}
	}
	issues = merge(issues, s.Profiles.Validate(res, named...))
	if res.IsSubsetted() {
		// A subset (_summary, _elements) lacks what it left out: written
		// back, it would erase that from the record.
		issues = append(issues, fhir.Issue{Kind: fhir.KindUnprocessable, Expression: []string{typ + ".meta.tag"},
			Diagnostics: "The resource carries the SUBSETTED tag (" + fhir.SubsettedSystem + "|" + fhir.SubsettedCode + "): it is a summary or a " +
				"selection of elements, not the whole resource. Read it without _summary or _elements, change that, and send it whole"})
	}
	if id := res.ID(); id != "" && !fhir.ValidID(id) {
		issues = append(issues, fhir.Issue{Kind: fhir.KindInvalid, Expression: []string{typ + ".id"},
			Diagnostics: fmt.Sprintf("%q is not a valid resource id", clip(id))})
	}
	return issues
}

// merge adds the profile's issues to the base specification's, leaving out
// those about an element the base already found wrong.
func merge(base, profile []fhir.Issue) []fhir.Issue {
	seen := map[string]bool{}
	for _, is := range base {
		for _, e := range is.Expression {
			seen[e] = true
		}
	}
	out := base
	for _, is := range profile {
		if len(is.Expression) == 0 || !seen[is.Expression[0]] {
			out = append(out, is)
		}
	}
	return out
}

// ifMatch reads an If-Match header: W/"3" or "3".
func ifMatch(c *gin.Context) (*int64, error) {
	return parseIfMatch(c.GetHeader("If-Match"))
}

// parseIfMatch reads an If-Match value (the header, or a Bundle entry's
// request.ifMatch): W/"3" or "3"; "" is none.
func parseIfMatch(h string) (*int64, error) {
	h = strings.TrimSpace(h)
	if h == "" {
		return nil, nil
	}
	v := strings.Trim(strings.TrimPrefix(h, "W/"), `"`)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return nil, fhir.Errorf(fhir.KindInvalidHeader, `If-Match must be a version ETag such as W/"1"`)
	}
	return &n, nil
}

// returnPref reads Prefer: return=minimal|representation|OperationOutcome.
func returnPref(c *gin.Context) string {
	for _, v := range c.Request.Header.Values("Prefer") {
		for _, part := range strings.Split(v, ",") {
			k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "return") {
				return strings.Trim(strings.TrimSpace(val), `"`)
			}
		}
	}
	return "representation"
}

// written answers a single write: its error, or the resource as Prefer
// asks.
func (s *Server) written(c *gin.Context) func([]registry.Result, error) error {
	return func(results []registry.Result, err error) error {
		if err != nil {
			return err
		}
		s.writeResult(c, results[0])
		return nil
	}
}

// writeResult answers a write's result as Prefer asks.
func (s *Server) writeResult(c *gin.Context, res registry.Result) {
	c.Header("Location", s.location(res.Rec))
	versionHeaders(c, res.Rec)
	switch returnPref(c) {
	case "minimal":
		c.Status(res.Status)
	case "OperationOutcome":
		s.writeJSON(c, res.Status, resultOutcome(res))
	default:
		s.writeJSON(c, res.Status, res.Rec.Body)
	}
}

// resultOutcome is the OperationOutcome of an applied write: what was done,
// then the plan's data-quality warnings (severity warning or information:
// the write was made).
func resultOutcome(res registry.Result) []byte {
	return outcomeJSON(append([]fhir.Issue{{Severity: "information", Type: "informational", Diagnostics: res.Note}}, res.Warnings...))
}

// apply applies one change of a single write.
func (s *Server) apply(c *gin.Context, ch registry.Change) ([]registry.Result, error) {
	return s.reg.Apply(c.Request.Context(), caller(c, false), []registry.Change{ch}, registry.Single)
}

// update serves PUT /{type}/{id}.
func (s *Server) update(typ string) gin.HandlerFunc {
	return s.handle(func(c *gin.Context) error {
		in, match, err := s.writeRequest(c, typ)
		if err != nil {
			return err
		}
		id, err := idParam(c)
		if err != nil {
			return err
		}
		if in.ID != id {
			return fhir.At(fhir.KindInvalid, typ+".id", "The resource id must match the URL (%s/%s)", typ, id)
		}
		return s.written(c)(s.apply(c, registry.Change{Op: registry.Put, Type: typ, ID: id, In: in, IfMatch: match}))
	})
}

// conditionalUpdate serves PUT /{type}?identifier=system|value.
func (s *Server) conditionalUpdate(typ string) gin.HandlerFunc {
	return s.handle(func(c *gin.Context) error {
		key, err := conditionKey(c.Request.URL.RawQuery)
		if err != nil {
			return err
		}
		in, match, err := s.writeRequest(c, typ)
		if err != nil {
			return err
		}
		return s.written(c)(s.apply(c, registry.Change{Op: registry.Put, Type: typ, Condition: key, In: in, IfMatch: match}))
	})
}

// create serves POST /{type}, honouring If-None-Exist: identifier=…
func (s *Server) create(typ string) gin.HandlerFunc {
	return s.handle(func(c *gin.Context) error {
		in, _, err := s.writeRequest(c, typ)
		if err != nil {
			return err
		}
		key := ""
		if cond := c.GetHeader("If-None-Exist"); cond != "" {
			if key, err = conditionKey(cond); err != nil {
				return err
			}
		}
		return s.written(c)(s.apply(c, registry.Change{Op: registry.Create, Type: typ, Condition: key, In: in}))
	})
}

// writeRequest runs what every write shares: permission, body, decoding,
// the caller's ownership of what it writes, and If-Match.
func (s *Server) writeRequest(c *gin.Context, typ string) (*registry.Incoming, *int64, error) {
	p := principal(c)
	if err := registry.MayWrite(p, typ); err != nil {
		return nil, nil, err
	}
	match, err := ifMatch(c)
	if err != nil {
		return nil, nil, err
	}
	body, err := s.readBody(c, s.Limits.MaxResourceBytes)
	if err != nil {
		return nil, nil, err
	}
	in, err := s.decodeResource(body, typ)
	if err != nil {
		return nil, nil, err
	}
	if err := registry.OwnWrite(p, in); err != nil {
		return nil, nil, err
	}
	return in, match, nil
}

// conditionKey reads the condition of a conditional write: exactly one
// identifier=system|value.
func conditionKey(raw string) (string, error) {
	q, err := fhir.ParseSearch(raw)
	if err != nil {
		return "", err
	}
	if len(q.Params) != 1 || q.Params[0].Raw != "identifier" {
		return "", fhir.Errorf(fhir.KindInvalidSearch, "A conditional write is by identifier only: ?identifier=system|value")
	}
	return identifierKey(q.Params[0])
}

// remove serves DELETE /{type}/{id}: a plan recorded in error. Its Flag
// goes with it, in the same write.
func (s *Server) remove(typ string) gin.HandlerFunc {
	return s.handle(func(c *gin.Context) error {
		if err := registry.MayWrite(principal(c), typ); err != nil {
			return err
		}
		match, err := ifMatch(c)
		if err != nil {
			return err
		}
		id, err := idParam(c)
		if err != nil {
			return err
		}
		results, err := s.apply(c, registry.Change{Op: registry.Delete, Type: typ, ID: id, IfMatch: match})
		if err != nil {
			return err
		}
		versionHeaders(c, results[0].Rec)
		s.writeJSON(c, http.StatusOK, outcomeJSON([]fhir.Issue{{Severity: "information", Type: "informational", Diagnostics: results[0].Note}}))
		return nil
	})
}

// notAllowed answers writes to Flags: they are derived from EpisodeOfCare.
func (s *Server) notAllowed(why string) gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Header("Allow", "GET")
		s.fail(c, fhir.Errorf(fhir.KindMethodNotAllowed, "%s", why))
	}
}
