package handlers

import (
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"cpis/auth"
	"cpis/fhir"
	"cpis/handlers/registry"
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
	sort    store.Sort // the _sort applied (SortID when none)
	// subset is what _summary and _elements leave out of each resource.
	subset fhir.Subset
	p      *auth.Principal
	spec   *resourceSpec
}

// searchInput is the query of a search: the URL query, plus the form body of
// POST [type]/_search (which keeps NHS numbers out of URLs and logs).
func searchInput(c *gin.Context) (string, error) {
	raw := c.Request.URL.RawQuery
	if c.Request.Method != http.MethodPost {
		return raw, nil
	}
	b, err := io.ReadAll(io.LimitReader(c.Request.Body, maxSearchBody+1))
	if bodyTimedOut(err) {
		return "", slowBody(err)
	}
	if err != nil {
		return "", fhir.Wrap(fhir.KindInvalid, err, "The search body could not be read")
	}
	if len(b) > maxSearchBody {
		return "", fhir.Errorf(fhir.KindTooLarge, "The search body is too large")
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
	q, err := fhir.ParseSearch(raw)
	if err != nil {
		return nil, err
	}
	if q.Cursor != "" {
		// A paging link: the search it carries, for the caller it was
		// issued to, from the store's position.
		if !onlyCursor(raw) {
			return nil, fhir.At(fhir.KindInvalidSearch, "_cursor", "A paging link carries the whole search; follow it as given, without other parameters")
		}
		pc, err := s.cursors.open(q.Cursor, principal(c), typ, s.now())
		if err != nil {
			return nil, err
		}
		format, pretty := q.Format, q.Pretty
		if q, err = fhir.ParseSearch(pc.Query); err != nil {
			return nil, err
		}
		q.Cursor, q.Format, q.Pretty = pc.Store, format, pretty
	}
	sr := &searchRequest{q: q, p: principal(c), spec: s.specs[typ]}
	silentValue, hasSilent := "", false
	for _, prm := range q.Params {
		sp := sr.spec.param(prm.Raw)
		switch {
		case sp == nil && prm.Raw == "_elements":
			if sr.subset.Elements != nil {
				return nil, fhir.At(fhir.KindInvalidSearch, "_elements", "Give _elements once, with the names separated by commas")
			}
			if sr.subset.Elements, err = fhir.ParseElements(typ, prm.Values); err != nil {
				return nil, err
			}
			if sr.subset.Elements == nil {
				sr.subset.Elements = []string{}
			}
		case sp == nil && prm.Raw == "_revinclude":
			for _, v := range prm.Values {
				sr.ignored = append(sr.ignored, "_revinclude="+v)
			}
		case sp == nil:
			sr.ignored = append(sr.ignored, prm.Raw)
		case sp.Kind == paramSilent:
			if hasSilent || len(prm.Values) != 1 {
				return nil, fhir.At(fhir.KindInvalidSearch, "silent", "silent must be given once, true or false")
			}
			silentValue, hasSilent = prm.Values[0], true
		default:
			sr.applied = append(sr.applied, prm)
		}
	}
	if srt, ok := searchSort(sr.spec, q.Sort); ok {
		sr.sort = srt
	} else {
		sr.ignored = append(sr.ignored, "_sort="+q.Sort)
	}
	if q.Summary != "" {
		if err := fhir.ParseSummary(q.Summary); err != nil {
			return nil, err
		}
		sr.subset.Summary = q.Summary
	}
	for _, inc := range q.Includes {
		if !sr.spec.includes(inc) {
			sr.ignored = append(sr.ignored, "_include="+inc.Raw)
		}
	}
	setSubset(c, sr.subset)
	if len(sr.ignored) > 0 && preferStrict(c) {
		return nil, fhir.Errorf(fhir.KindInvalidSearch, "Unknown or unsupported search parameters: %s", strings.Join(sr.ignored, ", "))
	}
	if sr.silent, err = silentMode(c, silentValue, hasSilent); err != nil {
		return nil, err
	}
	if sr.spec.AnyToken {
		return sr, nil
	}
	if err := registry.MayRead(sr.p, typ, sr.silent); err != nil {
		return nil, err
	}
	return sr, nil
}

// nhsNumber reads a patient NHS-number token: one value, the NHS number
// system (or none), ten digits with a valid check digit.
func nhsNumber(p fhir.Param) (string, error) {
	if len(p.Values) != 1 {
		return "", fhir.At(fhir.KindInvalidSearch, p.Raw, "Search by one NHS number at a time")
	}
	t := fhir.ParseToken(p.Values[0])
	if t.HasSystem && t.System != fhir.NHSNumberSystem {
		return "", fhir.At(fhir.KindInvalidSearch, p.Raw, "The patient identifier system must be %s", fhir.NHSNumberSystem)
	}
	if !fhir.ValidNHSNumber(t.Code) {
		return "", fhir.At(fhir.KindInvalidSearch, p.Raw, "Invalid NHS number")
	}
	return t.Code, nil
}

// identifierKey reads an identifier token as the store's key, system|value.
func identifierKey(p fhir.Param) (string, error) {
	if len(p.Values) != 1 {
		return "", fhir.At(fhir.KindInvalidSearch, p.Raw, "Search by one identifier at a time")
	}
	t := fhir.ParseToken(p.Values[0])
	if !t.HasSystem || t.System == "" || t.Code == "" {
		return "", fhir.At(fhir.KindInvalidSearch, p.Raw, "identifier must be system|value")
	}
	return t.System + "|" + t.Code, nil
}

// registrySearch turns the applied parameters into the registry's search;
// the registry adds what the caller's permissions require.
func (s *Server) registrySearch(typ string, sr *searchRequest) (registry.Search, error) {
	q := registry.Search{Type: typ, Limit: sr.q.Count, Sort: sr.sort, Query: typ + "?" + s.selfQuery(sr, "")}
	if sr.q.Summary == "count" {
		q.Limit = 0
	}
	if err := readPosition(sr.sort, sr.q.Cursor, &q); err != nil {
		return q, err
	}
	var err error
	var lastUpdated []fhir.Param
	for _, prm := range sr.applied {
		sp := sr.spec.param(prm.Raw)
		switch sp.Kind {
		case paramNHSNumber:
			nhs, err := nhsNumber(prm)
			if err != nil {
				return q, err
			}
			if q.Subject != "" && q.Subject != nhs {
				return q, fhir.At(fhir.KindInvalidSearch, prm.Raw, "Search by one NHS number at a time")
			}
			q.Subject = nhs
		case paramIdentifier:
			token, err := identifierKey(prm)
			if err != nil {
				return q, err
			}
			if q.Identifier != "" && q.Identifier != token {
				return q, fhir.At(fhir.KindInvalidSearch, prm.Raw, "Search by one identifier at a time")
			}
			q.Identifier = token
		case paramID:
			for _, id := range prm.Values {
				if !fhir.ValidID(id) {
					return q, fhir.At(fhir.KindInvalidSearch, "_id", "%q is not a valid id", clip(id))
				}
			}
			q.IDs = append(q.IDs, prm.Values...)
		case paramUpdated:
			lastUpdated = append(lastUpdated, prm)
		}
	}
	if q.UpdatedFrom, q.UpdatedTo, err = s.updatedRange(lastUpdated); err != nil {
		return q, err
	}
	for _, inc := range sr.q.Includes {
		if sr.spec.includes(inc) {
			q.Include = true
		}
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
		q, err := s.registrySearch(typ, sr)
		if err != nil {
			return err
		}
		page, err := s.reg.Search(c.Request.Context(), caller(c, sr.silent), q)
		if err != nil {
			return err
		}
		total := page.Total
		b := &fhir.Bundle{Type: "searchset", Total: &total, Timestamp: fhir.Instant(s.now())}
		b.Link = append(b.Link, fhir.Link{Relation: "self", URL: s.selfLink(typ, sr, searchCursorTTL)})
		if q.Limit > 0 && len(page.Matches) == q.Limit {
			b.Link = append(b.Link, fhir.Link{Relation: "next", URL: s.pageLink(typ, sr, position(sr.sort, page), searchCursorTTL)})
		}
		for _, r := range page.Matches {
			b.Entry = append(b.Entry, fhir.Entry{FullURL: s.fullURL(r.Type, r.ID), Resource: r.Body, Search: &fhir.EntrySearch{Mode: "match"}})
		}
		for _, o := range page.Included {
			b.Entry = append(b.Entry, fhir.Entry{FullURL: s.fullURL(o.Type, o.ID), Resource: o.Body, Search: &fhir.EntrySearch{Mode: "include"}})
		}
		if len(sr.ignored) > 0 {
			b.Entry = append(b.Entry, ignoredEntry(sr))
		}
		s.writeBundle(c, b)
		return nil
	})
}

// ignoredEntry is the searchset entry that reports the parameters a search
// ignored.
func ignoredEntry(sr *searchRequest) fhir.Entry {
	oo := outcomeJSON([]fhir.Issue{{Severity: "warning", Type: "not-supported", Kind: fhir.KindInvalidSearch,
		Diagnostics: "Ignored unknown or unsupported search parameters: " + strings.Join(sr.ignored, ", ")}})
	return fhir.Entry{Resource: oo, Search: &fhir.EntrySearch{Mode: "outcome"}}
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
		if sr.spec.includes(inc) {
			parts = append(parts, "_include="+queryEscape(inc.Raw))
		}
	}
	if sr.q.Summary != "" && sr.q.Summary != fhir.SummaryFalse {
		parts = append(parts, "_summary="+sr.q.Summary)
	}
	if len(sr.subset.Elements) > 0 {
		parts = append(parts, "_elements="+queryEscape(strings.Join(sr.subset.Elements, ",")))
	}
	if _, ok := searchSort(sr.spec, sr.q.Sort); ok && sr.q.Sort != "" {
		parts = append(parts, "_sort="+queryEscape(sr.q.Sort))
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
