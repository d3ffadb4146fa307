package handlers

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/gin-gonic/gin"

	"cpis/auth"
	"cpis/fhir"
	"cpis/handlers/internal/parallel"
	"cpis/handlers/registry"
)

// postedBundle is a transaction or batch Bundle as read from a request.
type postedBundle struct {
	typ     string // transaction or batch
	entries []*bundleEntry
	// unchecked counts the entries of a transaction left unchecked because
	// those before them already had fhir.MaxIssues problems: the
	// transaction is refused anyway, and checking more is work for nothing.
	unchecked int
}

// bundleEntry is one entry of a posted Bundle, read and checked on its own:
// what it asks for, and everything wrong with it.
type bundleEntry struct {
	index   int
	method  string // PUT, POST or DELETE
	typ     string
	id      string // the id of PUT or DELETE Type/id
	key     string // the identifier condition (PUT Type?identifier=, POST ifNoneExist)
	ifMatch *int64
	fullURL string
	in      *registry.Incoming // the resource of a PUT or POST
	refs    []refSite          // references in the resource to other entries
	err     error              // nil if the entry is good; expressions under Bundle.entry[i]
}

// refSite is a reference in an entry's resource to another entry's fullUrl
// (urn:uuid: or urn:oid:), or a conditional reference (Type?params).
type refSite struct {
	obj  map[string]any // the Reference; its "reference" is rewritten
	to   string
	path string
}

// The elements of a Bundle, an entry and an entry's request this server
// reads or accepts and ignores.
var (
	bundleElements = map[string]bool{"resourceType": true, "id": true, "meta": true, "implicitRules": true, "language": true,
		"identifier": true, "type": true, "timestamp": true, "total": true, "link": true, "entry": true, "signature": true}
	entryElements = map[string]bool{"id": true, "extension": true, "link": true, "fullUrl": true, "resource": true,
		"request": true, "search": true, "response": true}
	requestElements = map[string]bool{"id": true, "extension": true, "method": true, "url": true, "ifMatch": true, "ifNoneExist": true}
)

// readBundle reads a posted Bundle as a stream: the body is bounded by
// Limits.MaxBundleBytes (413 beyond it) and the entries are decoded one at a
// time and counted, so a Bundle with more than Limits.MaxBundleEntries is
// refused (413) at the first entry too many, without reading the rest.
// Problems with the Bundle itself fail the request; then each entry is
// checked, and its problems are kept with the entry.
func (s *Server) readBundle(c *gin.Context, p *auth.Principal) (*postedBundle, error) {
	// Whitespace runs are collapsed as the body streams in (see
	// fhir.CompactReader): the decoder would otherwise rescan them.
	dec := json.NewDecoder(fhir.CompactReader(http.MaxBytesReader(c.Writer, c.Request.Body, s.Limits.MaxBundleBytes)))
	b := &postedBundle{}
	tok, err := dec.Token()
	if err != nil {
		return nil, s.bundleReadError(err)
	}
	if tok != json.Delim('{') {
		return nil, fhir.Errorf(fhir.KindInvalid, "The body is not a JSON object")
	}
	var issues []fhir.Issue
	var resourceType string
	var raws []json.RawMessage
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, s.bundleReadError(err)
		}
		name, _ := tok.(string)
		if seen[name] {
			issues = append(issues, fhir.Issue{Kind: fhir.KindInvalid, Diagnostics: fmt.Sprintf("Element %q appears twice", clip(name)), Expression: []string{"Bundle." + clip(name)}})
		}
		seen[name] = true
		switch {
		case name == "resourceType":
			err = dec.Decode(&resourceType)
		case name == "type":
			err = dec.Decode(&b.typ)
		case name == "entry":
			raws, err = s.readEntries(dec, raws)
		default:
			if !bundleElements[name] {
				issues = append(issues, fhir.Issue{Kind: fhir.KindInvalid, Diagnostics: fmt.Sprintf("Unknown element %q", clip(name)), Expression: []string{"Bundle." + clip(name)}})
			}
			var skip json.RawMessage
			err = dec.Decode(&skip)
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			issues = append(issues, fhir.Issue{Kind: fhir.KindInvalid, Diagnostics: fmt.Sprintf("%s must be a string", name), Expression: []string{"Bundle." + name}})
		} else if err != nil {
			return nil, s.bundleReadError(err)
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, s.bundleReadError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fhir.Errorf(fhir.KindInvalid, "The body holds more than one JSON value")
	}
	if resourceType != "Bundle" {
		issues = append(issues, fhir.Issue{Kind: fhir.KindInvalid, Diagnostics: "Only a Bundle can be posted to the base", Expression: []string{"resourceType"}})
	}
	if b.typ != "transaction" && b.typ != "batch" {
		issues = append(issues, fhir.Issue{Kind: fhir.KindInvalid, Diagnostics: "The Bundle type must be transaction or batch", Expression: []string{"Bundle.type"}})
	}
	if err := fhir.Invalid(issues); err != nil {
		return nil, err
	}
	// Only a Bundle within the limits is checked entry by entry.
	b.entries = make([]*bundleEntry, 0, len(raws))
	problems := 0
	for from := 0; from < len(raws); from += entryChunk {
		chunk := s.checkEntries(p, raws, from, min(from+entryChunk, len(raws)))
		for k, e := range chunk {
			i := from + k
			if b.typ == "transaction" && problems >= fhir.MaxIssues {
				b.unchecked = len(raws) - i
				return b, nil
			}
			if e.err != nil {
				problems += len(fhir.As(e.err).Issues)
			}
			b.entries = append(b.entries, e)
		}
	}
	return b, nil
}

// entryChunk is how many entries are checked at once, spread over the
// cores. A transaction stops checking once its entries have
// fhir.MaxIssues problems; the chunk bounds the work done past that point,
// and the entries checked past it are dropped, so the answer is the one a
// check of one entry after another gives.
const entryChunk = 64

// checkEntries checks raws[from:to] with a worker per core, each entry on
// its own (decoding and validating a resource is most of an upload's
// CPU), and releases their raw JSON. Entry i is out[i-from]. A panic in a
// worker is raised again here, in the request's goroutine, where the
// recovery middleware answers it.
func (s *Server) checkEntries(p *auth.Principal, raws []json.RawMessage, from, to int) []*bundleEntry {
	out := make([]*bundleEntry, to-from)
	parallel.Each(to-from, 1, func(k int) {
		i := from + k
		out[k], raws[i] = s.readEntry(p, i, raws[i]), nil
	})
	return out
}

// readEntries reads Bundle.entry one entry at a time, as JSON only, and
// counts them.
func (s *Server) readEntries(dec *json.Decoder, raws []json.RawMessage) ([]json.RawMessage, error) {
	tok, err := dec.Token()
	if err != nil || tok == nil {
		return raws, err // null: no entries
	}
	if tok != json.Delim('[') {
		return raws, fhir.At(fhir.KindInvalid, "Bundle.entry", "Bundle.entry must be an array")
	}
	for dec.More() {
		if len(raws) >= s.Limits.MaxBundleEntries {
			return raws, fhir.Errorf(fhir.KindTooLarge, "The Bundle has more than %d entries, the most this server accepts in one Bundle; split it", s.Limits.MaxBundleEntries)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return raws, err
		}
		raws = append(raws, raw)
	}
	_, err = dec.Token()
	return raws, err
}

// bundleReadError describes a failure to read the body, without Go's words.
func (s *Server) bundleReadError(err error) error {
	var mbe *http.MaxBytesError
	var se *json.SyntaxError
	switch {
	case fhir.As(err) != nil:
		return err
	case errors.As(err, &mbe):
		return fhir.Errorf(fhir.KindTooLarge, "The Bundle is larger than this server accepts (%d bytes); split it", s.Limits.MaxBundleBytes)
	case errors.As(err, &se):
		return fhir.Wrap(fhir.KindInvalid, err, "The body is not valid JSON: syntax error at byte %d", se.Offset)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fhir.Wrap(fhir.KindInvalid, err, "The body is not valid JSON: it ends too early")
	case bodyTimedOut(err):
		return slowBody(err)
	}
	return fhir.Wrap(fhir.KindInvalid, err, "The request body could not be read")
}

// readEntry reads and checks one entry: its request, its resource against
// the base specification and the CP-IS profile, the caller's permission to
// write it, and the references it makes. Every problem is kept.
func (s *Server) readEntry(p *auth.Principal, i int, raw json.RawMessage) *bundleEntry {
	e := &bundleEntry{index: i}
	at := entryPath(i)
	var errs []*fhir.Error
	bad := func(kind fhir.Kind, expr, format string, args ...any) {
		errs = append(errs, fhir.As(fhir.At(kind, expr, format, args...)))
	}
	done := func() *bundleEntry {
		e.err = fhir.Join(errs...)
		return e
	}

	// One reading of the entry: no key twice, every key spelt exactly
	// (the maps below match keys exactly, and the resource goes through
	// the codec, which checks again).
	if issues := fhir.CheckJSON(raw, at); issues != nil {
		errs = append(errs, fhir.As(fhir.Invalid(issues)))
		return done()
	}
	fields, err := fhir.Members(raw)
	if err != nil || fields == nil {
		bad(fhir.KindInvalid, at, "Each entry must be a JSON object")
		return done()
	}
	for _, name := range sortedKeys(fields) {
		if !entryElements[name] {
			bad(fhir.KindInvalid, at+"."+clip(name), "Unknown or unsupported element %q", clip(name))
		}
	}
	if !stringElement(fields, "fullUrl", &e.fullURL) {
		bad(fhir.KindInvalid, at+".fullUrl", "fullUrl must be a string")
	}
	var req map[string]json.RawMessage
	if r, ok := fields["request"]; ok {
		req, err = fhir.Members(r)
	}
	if err != nil || req == nil {
		bad(fhir.KindInvalid, at+".request", "Each entry needs a request with a method and a url")
		return done()
	}
	for _, name := range sortedKeys(req) {
		if !requestElements[name] {
			bad(fhir.KindInvalid, at+".request."+clip(name), "Unknown or unsupported element %q", clip(name))
		}
	}
	var url, match, noneExist string
	for _, el := range []struct {
		name string
		dst  *string
	}{{"method", &e.method}, {"url", &url}, {"ifMatch", &match}, {"ifNoneExist", &noneExist}} {
		if !stringElement(req, el.name, el.dst) {
			bad(fhir.KindInvalid, at+".request."+el.name, "request.%s must be a string", el.name)
		}
	}
	if len(errs) > 0 {
		return done()
	}
	if err := s.entryTarget(e, url); err != nil {
		errs = append(errs, atRequest(i, "url", err))
		return done()
	}
	if err := entryMethod(e, noneExist); err != nil {
		errs = append(errs, fhir.As(err))
		return done()
	}
	if noneExist != "" {
		key, err := conditionKey(noneExist)
		if err != nil {
			errs = append(errs, atRequest(i, "ifNoneExist", err))
		}
		e.key = key
	}
	m, err := parseIfMatch(match)
	if err != nil {
		errs = append(errs, atRequest(i, "ifMatch", err))
	}
	e.ifMatch = m
	if err := registry.MayWrite(p, e.typ); err != nil {
		errs = append(errs, fhir.As(fhir.Under(at, e.typ, asError(err))))
	}

	res, hasResource := fields["resource"]
	switch {
	case e.method == http.MethodDelete && hasResource:
		bad(fhir.KindInvalid, at+".resource", "A DELETE entry carries no resource")
	case e.method == http.MethodDelete:
	case !hasResource:
		bad(fhir.KindInvalid, at+".resource", "A %s entry needs the resource", e.method)
	default:
		in, err := s.decodeCheckedResource(res, e.typ)
		if err != nil {
			errs = append(errs, fhir.As(fhir.Under(at, e.typ, asError(err))))
			return done()
		}
		e.in = in
		if err := registry.OwnWrite(p, in); err != nil {
			errs = append(errs, fhir.As(fhir.Under(at, e.typ, asError(err))))
		}
		if e.method == http.MethodPut && e.key == "" && in.ID != e.id {
			bad(fhir.KindInvalid, at+".resource.id", "The resource id must match request.url (%s/%s)", e.typ, e.id)
		}
		if e.key != "" && !in.HasKey(e.key) {
			bad(fhir.KindInvalid, at+".resource.identifier", "The resource must carry the identifier %s it is written by", e.key)
		}
		collectRefs(in.Res.Fields, at+".resource", &e.refs)
		for _, r := range e.refs {
			if strings.Contains(r.to, "?") {
				bad(fhir.KindInvalid, r.path, "Conditional references are not supported; identify the patient by NHS number and the local authority by ODS code")
			}
		}
	}
	return done()
}

// entryTarget reads request.url: Type, Type/id or Type?identifier=system|value,
// relative to the base (the base itself may be written out).
func (s *Server) entryTarget(e *bundleEntry, url string) error {
	rel := strings.TrimPrefix(url, s.BaseURL+"/")
	path, query, conditional := strings.Cut(rel, "?")
	parts := strings.Split(path, "/")
	if path == "" || len(parts) > 2 {
		return fhir.Errorf(fhir.KindInvalid, "request.url must be Type, Type/id or Type?identifier=system|value, relative to the base")
	}
	e.typ = parts[0]
	switch e.typ {
	case "EpisodeOfCare", "Organization":
	case "Flag":
		return fhir.Errorf(fhir.KindMethodNotAllowed, "Flags are derived from EpisodeOfCare by the server: write the EpisodeOfCare instead")
	default:
		return fhir.Errorf(fhir.KindInvalid, "A Bundle may write EpisodeOfCare and Organization, not %q", clip(e.typ))
	}
	if len(parts) == 2 {
		if conditional {
			return fhir.Errorf(fhir.KindInvalid, "request.url is Type/id or Type?identifier=system|value, not both")
		}
		if !fhir.ValidID(parts[1]) {
			return fhir.Errorf(fhir.KindInvalid, "%q is not a valid resource id", clip(parts[1]))
		}
		e.id = parts[1]
	}
	if conditional {
		key, err := conditionKey(query)
		if err != nil {
			return err
		}
		e.key = key
	}
	return nil
}

// entryMethod checks request.method against the url: PUT Type/id or
// Type?identifier=, POST Type (optionally with ifNoneExist), DELETE
// EpisodeOfCare/id. Reads are not served from Bundles.
func entryMethod(e *bundleEntry, noneExist string) error {
	at := entryPath(e.index) + ".request"
	switch e.method {
	case http.MethodPut:
		if e.id == "" && e.key == "" {
			return fhir.At(fhir.KindInvalid, at+".url", "PUT needs Type/id or Type?identifier=system|value")
		}
	case http.MethodPost:
		if e.id != "" || e.key != "" {
			return fhir.At(fhir.KindInvalid, at+".url", "POST creates a resource at Type; give a condition in ifNoneExist")
		}
	case http.MethodDelete:
		switch {
		case e.typ != "EpisodeOfCare":
			return fhir.At(fhir.KindMethodNotAllowed, at+".method", "%s cannot be deleted", e.typ)
		case e.id == "":
			return fhir.At(fhir.KindInvalid, at+".url", "DELETE needs EpisodeOfCare/id; conditional deletes are not supported")
		}
	case http.MethodPatch:
		return fhir.At(fhir.KindMethodNotAllowed, at+".method", "PATCH entries are not supported in Bundles: send the JSON Patch as its own PATCH request "+
			"(Content-Type %s), or PUT the whole resource in the Bundle", jsonPatchMIME)
	case http.MethodGet, http.MethodHead:
		return fhir.At(fhir.KindMethodNotAllowed, at+".method", "%s entries are not supported in Bundles: read and search with their own requests, which are audited", e.method)
	default:
		return fhir.At(fhir.KindInvalid, at+".method", "request.method must be PUT, POST or DELETE")
	}
	if noneExist != "" && e.method != http.MethodPost {
		return fhir.At(fhir.KindInvalid, at+".ifNoneExist", "ifNoneExist goes with POST")
	}
	return nil
}

// asError is err as the *fhir.Error the checks return.
func asError(err error) *fhir.Error {
	if fe := fhir.As(err); fe != nil {
		return fe
	}
	return fhir.As(fhir.Wrap(fhir.KindInternal, err, "The entry could not be checked"))
}

// stringElement decodes an optional string element; false if it is there
// but not a string.
func stringElement(m map[string]json.RawMessage, name string, dst *string) bool {
	v, ok := m[name]
	if !ok {
		return true
	}
	return json.Unmarshal(v, dst) == nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// collectRefs finds the references in a resource that name another entry
// (urn:uuid:, urn:oid:) or a search (Type?params), with their paths.
func collectRefs(v any, path string, out *[]refSite) {
	switch x := v.(type) {
	case map[string]any:
		if r, ok := x["reference"].(string); ok && (strings.HasPrefix(r, "urn:") || strings.Contains(r, "?")) {
			*out = append(*out, refSite{obj: x, to: r, path: path + ".reference"})
		}
		for _, k := range sortedKeys(x) {
			collectRefs(x[k], path+"."+k, out)
		}
	case []any:
		for i, el := range x {
			collectRefs(el, fmt.Sprintf("%s[%d]", path, i), out)
		}
	}
}
