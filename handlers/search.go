package handlers

import (
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"cpis/auth"
	"cpis/fhir"
	"cpis/store"
)

// maxSearchBody bounds a POST _search form body.
const maxSearchBody = 64 << 10

// searchRequest is a parsed search: the query, the parameters the server
// applies (in order, for the self link), those it ignores, and the mode.
type searchRequest struct {
	q       *fhir.SearchQuery
	applied []fhir.Param
	ignored []string
	silent  bool
	p       *auth.Principal
	spec    *resourceSpec
}

// searchInput is the query of a search: the URL query, plus the form body of
// POST [type]/_search (which keeps NHS numbers out of URLs and logs).
func searchInput(c *gin.Context) (string, error) {
	raw := c.Request.URL.RawQuery
	if c.Request.Method != http.MethodPost {
		return raw, nil
	}
	b, err := io.ReadAll(io.LimitReader(c.Request.Body, maxSearchBody+1))
	if err != nil {
		return "", fhir.Wrap(fhir.CodeInvalidValue, err, "The search body could not be read")
	}
	if len(b) > maxSearchBody {
		return "", fhir.Errorf(fhir.CodeInvalidSearchData, "The search body is too large").WithStatus(http.StatusRequestEntityTooLarge)
	}
	body := strings.TrimSpace(string(b))
	switch {
	case raw == "":
		return body, nil
	case body == "":
		return raw, nil
	}
	return raw + "&" + body, nil
}

// preferStrict reports whether the client sent Prefer: handling=strict.
func preferStrict(c *gin.Context) bool {
	for _, v := range c.Request.Header.Values("Prefer") {
		for _, part := range strings.Split(v, ",") {
			if strings.EqualFold(strings.ReplaceAll(strings.TrimSpace(part), " ", ""), "handling=strict") {
				return true
			}
		}
	}
	return false
}

// parseSearch parses and checks a search of typ: known parameters, the
// silent switch, permission for the mode, strict handling.
func (s *Server) parseSearch(c *gin.Context, typ string) (*searchRequest, error) {
	raw, err := searchInput(c)
	if err != nil {
		return nil, err
	}
	q, ferr := fhir.ParseSearch(raw)
	if ferr != nil {
		return nil, ferr
	}
	if q.Cursor != "" {
		// A paging link: the search it carries, for the caller it was
		// issued to, from the store's position.
		if !onlyCursor(raw) {
			return nil, fhir.At(fhir.CodeInvalidSearchData, "_cursor", "A paging link carries the whole search; follow it as given, without other parameters")
		}
		pc, err := s.cursors.open(q.Cursor, principal(c), typ, s.now())
		if err != nil {
			return nil, err
		}
		format, pretty := q.Format, q.Pretty
		if q, ferr = fhir.ParseSearch(pc.Query); ferr != nil {
			return nil, ferr
		}
		q.Cursor, q.Format, q.Pretty = pc.Store, format, pretty
	}
	sr := &searchRequest{q: q, p: principal(c), spec: s.specs[typ]}
	silentValue, hasSilent := "", false
	for _, prm := range q.Params {
		sp := sr.spec.param(prm.Raw)
		switch {
		case sp == nil:
			sr.ignored = append(sr.ignored, prm.Raw)
		case sp.Kind == paramSilent:
			if hasSilent || len(prm.Values) != 1 {
				return nil, fhir.At(fhir.CodeInvalidSearchData, "silent", "silent must be given once, true or false")
			}
			silentValue, hasSilent = prm.Values[0], true
		default:
			sr.applied = append(sr.applied, prm)
		}
	}
	if q.Sort != "" {
		sr.ignored = append(sr.ignored, "_sort")
	}
	if q.Summary != "" && q.Summary != "count" {
		sr.ignored = append(sr.ignored, "_summary")
	}
	for _, inc := range q.Includes {
		if !sr.spec.includes(inc.Source + ":" + inc.Param) {
			sr.ignored = append(sr.ignored, "_include="+inc.Raw)
		}
	}
	if len(sr.ignored) > 0 && preferStrict(c) {
		return nil, fhir.Errorf(fhir.CodeInvalidSearchData, "Unknown or unsupported search parameters: %s", strings.Join(sr.ignored, ", "))
	}
	if sr.silent, err = silentMode(c, silentValue, hasSilent); err != nil {
		return nil, err
	}
	if sr.spec.AnyToken {
		return sr, nil
	}
	if err := mayRead(sr.p, typ, sr.silent); err != nil {
		return nil, err
	}
	return sr, nil
}

// nhsNumber reads a patient NHS-number token: one value, the NHS number
// system (or none), ten digits with a valid check digit.
func nhsNumber(p fhir.Param) (string, error) {
	if len(p.Values) != 1 {
		return "", fhir.At(fhir.CodeInvalidSearchData, p.Raw, "Search by one NHS number at a time")
	}
	t := fhir.ParseToken(p.Values[0])
	if t.HasSystem && t.System != fhir.NHSNumberSystem {
		return "", fhir.At(fhir.CodeInvalidSearchData, p.Raw, "The patient identifier system must be %s", fhir.NHSNumberSystem)
	}
	if !fhir.ValidNHSNumber(t.Code) {
		return "", fhir.At(fhir.CodeInvalidSearchData, p.Raw, "Invalid NHS number")
	}
	return t.Code, nil
}

// identifierKey reads an identifier token as the store's key, system|value.
func identifierKey(p fhir.Param) (string, error) {
	if len(p.Values) != 1 {
		return "", fhir.At(fhir.CodeInvalidSearchData, p.Raw, "Search by one identifier at a time")
	}
	t := fhir.ParseToken(p.Values[0])
	if !t.HasSystem || t.System == "" || t.Code == "" {
		return "", fhir.At(fhir.CodeInvalidSearchData, p.Raw, "identifier must be system|value")
	}
	return t.System + "|" + t.Code, nil
}

// storeQuery turns the applied parameters into a store query, adding what
// the caller's permissions require: a local authority sees only what it
// manages; a health user must name a patient.
func (s *Server) storeQuery(typ string, sr *searchRequest) (store.Query, error) {
	q := store.Query{Type: typ, RetainedSince: s.retainedSince(), Limit: sr.q.Count, After: sr.q.Cursor, Count: true}
	if sr.q.Summary == "count" {
		q.Limit = 0
	}
	identifiers := map[string]bool{}
	for _, prm := range sr.applied {
		sp := sr.spec.param(prm.Raw)
		switch sp.Kind {
		case paramNHSNumber:
			nhs, err := nhsNumber(prm)
			if err != nil {
				return q, err
			}
			if q.Subject != "" && q.Subject != nhs {
				return q, fhir.At(fhir.CodeInvalidSearchData, prm.Raw, "Search by one NHS number at a time")
			}
			q.Subject = nhs
		case paramIdentifier:
			token, err := identifierKey(prm)
			if err != nil {
				return q, err
			}
			// Identifiers are unique within the organisation that manages
			// the resource: a local authority searches its own; an LA's
			// Organization is managed by its own ODS code; a health user's
			// search of plans (by NHS number) matches the identifier under
			// whichever LA manages each plan. The store applies it before
			// paging and counting, like every other condition.
			if len(identifiers) > 0 && !identifiers[token] {
				return q, fhir.At(fhir.CodeInvalidSearchData, prm.Raw, "Search by one identifier at a time")
			}
			identifiers[token] = true
			switch {
			case sr.p.IsLA():
				q.Key = storeKey(sr.p.OrgCode, token)
			case typ == "Organization":
				q.Key = storeKey(fhir.ParseToken(prm.Values[0]).Code, token)
			default:
				q.OwnKey = token
			}
		case paramID:
			for _, id := range prm.Values {
				if !fhir.ValidID(id) {
					return q, fhir.At(fhir.CodeInvalidSearchData, "_id", "%q is not a valid id", clip(id))
				}
			}
			q.IDs = append(q.IDs, prm.Values...)
		}
	}
	if sr.p.IsLA() {
		q.Owner = sr.p.OrgCode
	} else if patientType(typ) && q.Subject == "" {
		return q, fhir.Errorf(fhir.CodeInvalidSearchData, "Search by the patient's NHS number: %s?patient:identifier=%s|{NHS number}", typ, fhir.NHSNumberSystem)
	}
	return q, nil
}

// search serves GET /{type} and POST /{type}/_search.
func (s *Server) search(typ string) gin.HandlerFunc {
	return s.handle(func(c *gin.Context) error {
		sr, err := s.parseSearch(c, typ)
		if err != nil {
			return err
		}
		q, err := s.storeQuery(typ, sr)
		if err != nil {
			return err
		}
		recs, total, err := s.Store.Search(c.Request.Context(), q)
		if err != nil {
			return err
		}
		if q.Subject != "" {
			if err := s.checkSubjects(c, q.Subject, recs); err != nil {
				return err
			}
		}
		self := s.selfQuery(sr, "")
		if patientType(typ) {
			seen, err := s.auditMatches(c, q, recs, total)
			if err != nil {
				return err
			}
			t := touched{}
			if q.Subject != "" {
				t.see(q.Subject)
			}
			for _, r := range seen {
				t.add(r)
			}
			if err := s.recordAccess(c, sr.p, sr.silent, "search-type", typ+"?"+self, "", t); err != nil {
				return err
			}
		}
		b := &fhir.Bundle{Type: "searchset", Total: &total, Timestamp: fhir.Instant(s.now())}
		b.Link = append(b.Link, fhir.Link{Relation: "self", URL: s.selfLink(typ, sr, searchCursorTTL)})
		if q.Limit > 0 && len(recs) == q.Limit {
			b.Link = append(b.Link, fhir.Link{Relation: "next", URL: s.pageLink(typ, sr, recs[len(recs)-1].ID, searchCursorTTL)})
		}
		for _, r := range recs {
			b.Entry = append(b.Entry, fhir.Entry{FullURL: s.fullURL(r.Type, r.ID), Resource: s.body(r), Search: &fhir.EntrySearch{Mode: "match"}})
		}
		included, err := s.include(c, sr, recs)
		if err != nil {
			return err
		}
		b.Entry = append(b.Entry, included...)
		if len(sr.ignored) > 0 {
			b.Entry = append(b.Entry, ignoredEntry(sr))
		}
		s.writeBundle(c, b)
		return nil
	})
}

// auditMatches is what a search by NHS number must audit: every match, not
// only the page. The total alone (_summary=count, _count=0, or a first page
// of a longer list) tells the caller the patient is on plans, so every local
// authority whose plan matched is told, and the AuditEvent counts them all.
// Only when the page does not hold every match is the store asked again; a
// patient has a handful of plans.
func (s *Server) auditMatches(c *gin.Context, q store.Query, recs []store.Record, total int) ([]store.Record, error) {
	if q.Subject == "" || total <= len(recs) {
		return recs, nil
	}
	all := q
	all.Limit, all.After, all.Count = total, "", false
	matches, _, err := s.Store.Search(c.Request.Context(), all)
	if err != nil {
		return nil, err
	}
	return matches, s.checkSubjects(c, q.Subject, matches)
}

// ignoredEntry is the searchset entry that reports the parameters a search
// ignored.
func ignoredEntry(sr *searchRequest) fhir.Entry {
	oo := fhir.Outcome([]fhir.Issue{{Severity: "warning", Type: "not-supported", Code: fhir.CodeInvalidSearchData,
		Diagnostics: "Ignored unknown or unsupported search parameters: " + strings.Join(sr.ignored, ", ")}})
	return fhir.Entry{Resource: oo.JSON(), Search: &fhir.EntrySearch{Mode: "outcome"}}
}

// include adds the Organizations that _include=Flag:author or
// EpisodeOfCare:organization names: the local authorities managing the
// matches. Each included resource is checked like a read: a caller who may
// not read Organizations, or a local authority looking at another's, gets
// no include.
func (s *Server) include(c *gin.Context, sr *searchRequest, recs []store.Record) ([]fhir.Entry, error) {
	want := false
	for _, inc := range sr.q.Includes {
		if sr.spec.includes(inc.Source+":"+inc.Param) && (inc.Target == "" || inc.Target == "Organization") {
			want = true
		}
	}
	if !want || len(recs) == 0 || mayRead(sr.p, "Organization", sr.silent) != nil {
		return nil, nil
	}
	seen := map[string]bool{}
	var out []fhir.Entry
	for _, r := range recs {
		if r.Owner == "" || seen[r.Owner] {
			continue
		}
		seen[r.Owner] = true
		orgs, _, err := s.Store.Search(c.Request.Context(), store.Query{Type: "Organization", Key: laKey(r.Owner), Limit: 1})
		if err != nil {
			return nil, err
		}
		for _, o := range orgs {
			if mayReadRecord(sr.p, o) != nil {
				continue
			}
			out = append(out, fhir.Entry{FullURL: s.fullURL(o.Type, o.ID), Resource: o.Body, Search: &fhir.EntrySearch{Mode: "include"}})
		}
	}
	return out, nil
}

// selfQuery renders the applied parameters (and the paging cursor) as a
// query string, keeping ':' and '|' readable: what an AuditEvent records
// as the query, and what a sealed paging link carries.
func (s *Server) selfQuery(sr *searchRequest, cursor string) string {
	var parts []string
	for _, p := range sr.applied {
		vals := make([]string, len(p.Values))
		for i, v := range p.Values {
			vals[i] = queryEscape(strings.ReplaceAll(v, ",", `\,`))
		}
		parts = append(parts, queryEscape(p.Raw)+"="+strings.Join(vals, ","))
	}
	if sr.silent {
		parts = append(parts, "silent=true")
	}
	for _, inc := range sr.q.Includes {
		if sr.spec.includes(inc.Source + ":" + inc.Param) {
			parts = append(parts, "_include="+queryEscape(inc.Raw))
		}
	}
	if sr.q.Summary == "count" {
		parts = append(parts, "_summary=count")
	}
	parts = append(parts, "_count="+strconv.Itoa(sr.q.Count))
	if cursor != "" {
		parts = append(parts, "_cursor="+queryEscape(cursor))
	}
	return strings.Join(parts, "&")
}

// queryEscape escapes a query-string part as url.QueryEscape does, but
// leaves ':', '|' and '/' readable.
func queryEscape(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 8)
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', strings.IndexByte("-_.~:|/", c) >= 0:
			b.WriteByte(c)
		case c == ' ':
			b.WriteByte('+')
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}
