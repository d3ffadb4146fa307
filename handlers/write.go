package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"cpis/auth"
	"cpis/fhir"
	"cpis/profiles"
	"cpis/store"
)

// maxAttempts bounds the retries of a write that lost a race.
const maxAttempts = 8

// readBody reads a request body of at most limit bytes.
func (s *Server) readBody(c *gin.Context, limit int64) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, limit))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, fhir.Errorf(fhir.CodeInvalidValue, "The request body is larger than this server accepts (%d bytes)", limit).WithStatus(http.StatusRequestEntityTooLarge)
	case err != nil:
		return nil, fhir.Wrap(fhir.CodeInvalidValue, err, "The request body could not be read")
	}
	return b, nil
}

// incoming is a resource a client sent, decoded and checked against the
// base specification and its CP-IS profile.
type incoming struct {
	id   string // the id the client sent ("" if none)
	res  *fhir.Resource
	plan *profiles.Plan // EpisodeOfCare
	la   *profiles.LA   // Organization
}

// decodeResource decodes and validates a resource of the expected type,
// gathering every problem into one error. Every write (single, conditional
// and in Bundles) comes through here.
func (s *Server) decodeResource(body []byte, typ string) (*incoming, error) {
	res, issues := s.validateResource(body, typ)
	if err := fhir.Invalid(issues); err != nil {
		return nil, err
	}
	in := &incoming{id: res.ID(), res: res}
	switch typ {
	case "EpisodeOfCare":
		in.plan = profiles.ParsePlan(res, s.Location)
	case "Organization":
		in.la = profiles.ParseLA(res)
	}
	return in, nil
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
	if res.Type != typ {
		return nil, []fhir.Issue{{Code: fhir.CodeInvalidValue, Expression: []string{"resourceType"},
			Diagnostics: fmt.Sprintf("Expected a %s, got %q", typ, clip(res.Type))}}
	}
	issues = merge(issues, s.Profiles.Validate(res, named...))
	if id := res.ID(); id != "" && !fhir.ValidID(id) {
		issues = append(issues, fhir.Issue{Code: fhir.CodeInvalidValue, Expression: []string{typ + ".id"},
			Diagnostics: fmt.Sprintf("%q is not a valid resource id", clip(id))})
	}
	return res, issues
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

// owner is the organisation that will manage the resource.
func (in *incoming) owner() string {
	if in.plan != nil {
		return in.plan.LA
	}
	return in.la.ODS
}

// tokens are the resource's identifiers, system|value.
func (in *incoming) tokens() []string {
	if in.plan != nil {
		return in.plan.Keys()
	}
	return []string{fhir.ODSSystem + "|" + in.la.ODS}
}

// keys are the resource's unique keys in the store: its identifiers within
// the organisation that manages it.
func (in *incoming) keys() []string {
	tokens := in.tokens()
	out := make([]string, len(tokens))
	for i, t := range tokens {
		out[i] = storeKey(in.owner(), t)
	}
	return out
}

// hasKey reports whether the resource carries an identifier (system|value).
func (in *incoming) hasKey(token string) bool {
	for _, t := range in.tokens() {
		if t == token {
			return true
		}
	}
	return false
}

// laKey is the store key of a local authority's Organization.
func laKey(ods string) string { return storeKey(ods, fhir.ODSSystem+"|"+ods) }

// storeKey is the store's unique key of an identifier: an identifier is
// unique among the resources one organisation manages, so two local
// authorities whose systems number plans alike never clash.
func storeKey(owner, token string) string { return owner + "|" + token }

// keyToken is the identifier (system|value) a store key holds.
func keyToken(key string) string {
	_, token, _ := strings.Cut(key, "|")
	return token
}

// ownWrite checks a local authority writes only what it manages: the
// resource must name the caller's own ODS code.
func ownWrite(p *auth.Principal, in *incoming) error {
	if in.owner() != p.OrgCode {
		expr := "Organization.identifier"
		if in.plan != nil {
			expr = "EpisodeOfCare.managingOrganization.identifier.value"
		}
		return fhir.At(fhir.CodeAccessDenied, expr, "Access has been denied to process this request: a local authority may only write its own records (%s)", p.OrgCode)
	}
	return nil
}

// record builds the stored record of the resource at a version: the JSON
// with id and meta stamped, its keys, and for a plan its derived Flag.
func (s *Server) record(typ, id string, in *incoming, version int64, now time.Time, laName string) store.Record {
	in.res.SetID(id)
	profile := profiles.OrganizationProfile
	if in.plan != nil {
		profile = profiles.EpisodeOfCareProfile
	}
	in.res.Stamp(version, now, profile)
	r := store.Record{Type: typ, ID: id, Version: version, Updated: now, Owner: in.owner(), Keys: in.keys(), Body: in.res.Encode()}
	if p := in.plan; p != nil {
		p.ID = id
		r.Subject, r.End = p.NHSNumber, p.End
		f := profiles.Flag(p, version, now, laName, now)
		r.Derived = &store.Derived{Type: "Flag", Body: f.Body, Ends: f.Ends}
	}
	return r
}

// laName is the local authority's name for a plan's Flag: the display the
// plan gives, else the name of the LA's Organization if it has one.
func (s *Server) laName(ctx context.Context, in *incoming) (string, error) {
	if in.plan == nil {
		return "", nil
	}
	if in.plan.LAName != "" {
		return in.plan.LAName, nil
	}
	orgs, _, err := s.Store.Search(ctx, store.Query{Type: "Organization", Key: laKey(in.plan.LA), Limit: 1})
	if err != nil || len(orgs) == 0 {
		return "", err
	}
	// Read with exact keys (a map, not a struct: encoding/json matches
	// struct fields case-insensitively); the server wrote this body.
	var o map[string]json.RawMessage
	var name string
	if json.Unmarshal(orgs[0].Body, &o) == nil {
		_ = json.Unmarshal(o["name"], &name)
	}
	return name, nil
}

// saved is the outcome of a write.
type saved struct {
	rec     store.Record
	created bool
}

// saveByID creates or updates typ/id with compare-and-swap on the version:
// a write that loses a race is retried, unless the client pinned the
// version with If-Match (then it is 412); one that keeps losing is 409. A
// local authority may not write over a resource another one manages.
func (s *Server) saveByID(ctx context.Context, p *auth.Principal, typ, id string, in *incoming, ifMatch *int64) (saved, error) {
	name, err := s.laName(ctx, in)
	if err != nil {
		return saved{}, err
	}
	for attempt := 0; ; attempt++ {
		cur, err := s.Store.Get(ctx, typ, id)
		exists := err == nil
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return saved{}, err
		}
		if err := putCheck(p, typ, id, cur, exists, ifMatch); err != nil {
			return saved{}, err
		}
		rec := s.record(typ, id, in, cur.Version+1, s.now(), name)
		err = s.Store.Commit(ctx, []store.Write{{Record: rec, Expect: cur.Version}})
		switch {
		case err == nil:
			return saved{rec: rec, created: !exists || cur.Deleted}, nil
		case errors.Is(err, store.ErrVersionConflict) && ifMatch == nil && attempt < maxAttempts:
			continue
		case errors.Is(err, store.ErrVersionConflict) && ifMatch != nil:
			return saved{}, fhir.Wrap(fhir.CodePreconditionFailed, err, "%s/%s was changed by another request after version %d", typ, id, *ifMatch)
		}
		return saved{}, err
	}
}

// putCheck checks a write of typ/id over its current record (exists: there
// is one, perhaps a tombstone): If-Match, if given, must name its version,
// and the caller must manage it. A resource another organisation manages
// is told apart from a missing one only where it must be: with If-Match
// both are 412 alike; without, the id cannot be created, so the answer is
// 409 (the id is in use), which names no organisation and shows nothing of
// the resource.
func putCheck(p *auth.Principal, typ, id string, cur store.Record, exists bool, ifMatch *int64) error {
	foreign := exists && cur.Owner != p.OrgCode
	if ifMatch != nil && (!exists || foreign || cur.Deleted || cur.Version != *ifMatch) {
		return fhir.Errorf(fhir.CodePreconditionFailed, "If-Match names version %d, but %s/%s is not at that version", *ifMatch, typ, id)
	}
	if foreign {
		return conflict("The id %s/%s is already in use; choose another id, or write by identifier (PUT %s?identifier=system|value)", typ, id, typ)
	}
	return nil
}

// saveConditional is a conditional update (PUT ?identifier=) or, with
// createOnly, a conditional create (POST with If-None-Exist). It is safe
// under concurrent requests: the identifier is a unique key in the store,
// so of two racing creates one wins and the other becomes an update (or,
// for a create, returns the winner).
func (s *Server) saveConditional(ctx context.Context, p *auth.Principal, typ, key string, in *incoming, ifMatch *int64, createOnly bool) (saved, error) {
	for attempt := 0; ; attempt++ {
		id, match, err := s.conditionalTarget(ctx, p, typ, key, in, ifMatch, createOnly)
		if err != nil {
			return saved{}, err
		}
		if match != nil && createOnly {
			return saved{rec: *match}, nil
		}
		res, err := s.saveByID(ctx, p, typ, id, in, ifMatch)
		var ue *store.UniqueError
		if errors.As(err, &ue) && ue.Key == storeKey(p.OrgCode, key) && attempt < maxAttempts {
			continue // another request created it first: look again
		}
		return res, err
	}
}

// conditionalTarget resolves the condition of a conditional write to the id
// to write: the one resource with the identifier key (match), or, if there
// is none, the id the resource carries or a new one. A conditional create
// always gets a new id.
func (s *Server) conditionalTarget(ctx context.Context, p *auth.Principal, typ, key string, in *incoming, ifMatch *int64, createOnly bool) (id string, match *store.Record, err error) {
	if !in.hasKey(key) {
		return "", nil, fhir.At(fhir.CodeInvalidValue, typ+".identifier", "The resource must carry the identifier %s it is written by", key)
	}
	recs, _, err := s.Store.Search(ctx, store.Query{Type: typ, Key: storeKey(p.OrgCode, key), Limit: 2})
	if err != nil {
		return "", nil, err
	}
	switch len(recs) {
	case 0:
		if ifMatch != nil {
			return "", nil, fhir.Errorf(fhir.CodePreconditionFailed, "If-Match was given but no %s has the identifier %s", typ, key)
		}
		if in.id == "" || createOnly {
			return s.NewID(), nil, nil
		}
		return in.id, nil, nil
	case 1:
		if recs[0].Owner != p.OrgCode {
			return "", nil, fhir.Errorf(fhir.CodeAccessDenied, "Access has been denied to process this request: the identifier %s belongs to a resource managed by another organisation", key)
		}
		if !createOnly && in.id != "" && in.id != recs[0].ID {
			return "", nil, fhir.At(fhir.CodeInvalidValue, typ+".id", "The resource id %q does not match %s/%s, which has the identifier %s", in.id, typ, recs[0].ID, key)
		}
		return recs[0].ID, &recs[0], nil
	}
	return "", nil, fhir.Errorf(fhir.CodePreconditionFailed, "More than one %s has the identifier %s", typ, key)
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
		return nil, fhir.Errorf(fhir.CodePreconditionFailed, `If-Match must be a version ETag such as W/"1"`).WithStatus(http.StatusBadRequest)
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

// writeSaved answers a successful write as Prefer asks.
func (s *Server) writeSaved(c *gin.Context, res saved) {
	status := http.StatusOK
	if res.created {
		status = http.StatusCreated
	}
	c.Header("Location", s.location(res.rec))
	versionHeaders(c, res.rec)
	switch returnPref(c) {
	case "minimal":
		c.Status(status)
	case "OperationOutcome":
		verb := "Updated"
		if res.created {
			verb = "Created"
		}
		oo := fhir.Outcome([]fhir.Issue{{Severity: "information", Type: "informational", Diagnostics: verb + " " + res.rec.Type + "/" + res.rec.ID + " version " + strconv.FormatInt(res.rec.Version, 10)}})
		s.writeJSON(c, status, oo.JSON())
	default:
		s.writeJSON(c, status, res.rec.Body)
	}
}

// update serves PUT /{type}/{id}.
func (s *Server) update(typ string) gin.HandlerFunc {
	return s.handle(func(c *gin.Context) error {
		p, in, match, err := s.writeRequest(c, typ)
		if err != nil {
			return err
		}
		id, err := idParam(c)
		if err != nil {
			return err
		}
		if in.id != id {
			return fhir.At(fhir.CodeInvalidValue, typ+".id", "The resource id must match the URL (%s/%s)", typ, id)
		}
		return s.saved(c)(s.saveByID(c.Request.Context(), p, typ, id, in, match))
	})
}

// conditionalUpdate serves PUT /{type}?identifier=system|value.
func (s *Server) conditionalUpdate(typ string) gin.HandlerFunc {
	return s.handle(func(c *gin.Context) error {
		key, err := conditionKey(c.Request.URL.RawQuery)
		if err != nil {
			return err
		}
		p, in, match, err := s.writeRequest(c, typ)
		if err != nil {
			return err
		}
		return s.saved(c)(s.saveConditional(c.Request.Context(), p, typ, key, in, match, false))
	})
}

// create serves POST /{type}, honouring If-None-Exist: identifier=…
func (s *Server) create(typ string) gin.HandlerFunc {
	return s.handle(func(c *gin.Context) error {
		p, in, _, err := s.writeRequest(c, typ)
		if err != nil {
			return err
		}
		cond := c.GetHeader("If-None-Exist")
		if cond == "" {
			return s.saved(c)(s.saveByID(c.Request.Context(), p, typ, s.NewID(), in, nil))
		}
		key, err := conditionKey(cond)
		if err != nil {
			return err
		}
		return s.saved(c)(s.saveConditional(c.Request.Context(), p, typ, key, in, nil, true))
	})
}

// saved answers a write's outcome: its error, or the saved resource as
// Prefer asks.
func (s *Server) saved(c *gin.Context) func(saved, error) error {
	return func(res saved, err error) error {
		if err != nil {
			return err
		}
		s.writeSaved(c, res)
		return nil
	}
}

// writeRequest runs what every write shares: permission, body, decoding,
// the caller's ownership of what it writes, and If-Match.
func (s *Server) writeRequest(c *gin.Context, typ string) (*auth.Principal, *incoming, *int64, error) {
	p := principal(c)
	if err := mayWrite(p, typ); err != nil {
		return nil, nil, nil, err
	}
	match, err := ifMatch(c)
	if err != nil {
		return nil, nil, nil, err
	}
	body, err := s.readBody(c, s.Limits.MaxResourceBytes)
	if err != nil {
		return nil, nil, nil, err
	}
	in, err := s.decodeResource(body, typ)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := ownWrite(p, in); err != nil {
		return nil, nil, nil, err
	}
	return p, in, match, nil
}

// conditionKey reads the condition of a conditional write: exactly one
// identifier=system|value.
func conditionKey(raw string) (string, error) {
	q, err := fhir.ParseSearch(raw)
	if err != nil {
		return "", err
	}
	if len(q.Params) != 1 || q.Params[0].Raw != "identifier" {
		return "", fhir.Errorf(fhir.CodeInvalidSearchData, "A conditional write is by identifier only: ?identifier=system|value")
	}
	return identifierKey(q.Params[0])
}

// remove serves DELETE /{type}/{id}: a plan recorded in error. Its Flag
// goes with it, in the same write.
func (s *Server) remove(typ string) gin.HandlerFunc {
	return s.handle(func(c *gin.Context) error {
		p := principal(c)
		if err := mayWrite(p, typ); err != nil {
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
		tomb, already, err := s.deleteByID(c.Request.Context(), p, typ, id, match)
		if err != nil {
			return err
		}
		versionHeaders(c, tomb)
		s.writeJSON(c, http.StatusOK, fhir.Outcome([]fhir.Issue{deletedIssue(tomb, already)}).JSON())
		return nil
	})
}

// deleteByID writes a tombstone for typ/id (and its derived record) with
// compare-and-swap on the version, retrying a lost race unless the client
// pinned the version with If-Match. already reports that the resource was
// deleted before; then nothing is written and tomb is the current tombstone.
func (s *Server) deleteByID(ctx context.Context, p *auth.Principal, typ, id string, match *int64) (tomb store.Record, already bool, err error) {
	for attempt := 0; ; attempt++ {
		cur, err := s.Store.Get(ctx, typ, id)
		if err != nil {
			return store.Record{}, false, err
		}
		if err := mayReadRecord(p, cur); err != nil {
			return store.Record{}, false, err // another's resource: not found, as a missing id
		}
		if err := putCheck(p, typ, id, cur, true, match); err != nil {
			return store.Record{}, false, err
		}
		if cur.Deleted {
			return cur, true, nil
		}
		tomb := tombstone(cur, s.now())
		err = s.Store.Commit(ctx, []store.Write{{Record: tomb, Expect: cur.Version}})
		switch {
		case errors.Is(err, store.ErrVersionConflict) && match == nil && attempt < maxAttempts:
			continue
		case errors.Is(err, store.ErrVersionConflict) && match != nil:
			return store.Record{}, false, fhir.Wrap(fhir.CodePreconditionFailed, err, "%s/%s was changed by another request after version %d", typ, id, *match)
		}
		if err != nil {
			return store.Record{}, false, err
		}
		return tomb, false, nil
	}
}

// tombstone is the record that deletes cur (and its derived record) at now.
func tombstone(cur store.Record, now time.Time) store.Record {
	tomb := store.Record{Type: cur.Type, ID: cur.ID, Version: cur.Version + 1, Updated: now, Deleted: true,
		Owner: cur.Owner, Subject: cur.Subject, End: now}
	if cur.Derived != nil {
		tomb.Derived = &store.Derived{Type: cur.Derived.Type}
	}
	return tomb
}

// deletedIssue is the informational issue that answers a delete.
func deletedIssue(tomb store.Record, already bool) fhir.Issue {
	msg := tomb.Type + "/" + tomb.ID + " was already deleted"
	if !already {
		msg = "Deleted " + tomb.Type + "/" + tomb.ID
		if tomb.Derived != nil {
			msg += " and its " + tomb.Derived.Type
		}
	}
	return fhir.Issue{Severity: "information", Type: "informational", Diagnostics: msg}
}

// notAllowed answers writes to Flags: they are derived from EpisodeOfCare.
func (s *Server) notAllowed(why string) gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Header("Allow", "GET")
		s.fail(c, fhir.Errorf(fhir.CodeMethodNotAllowed, "%s", why))
	}
}
