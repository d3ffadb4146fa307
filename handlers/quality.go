package handlers

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"cpis/fhir"
	"cpis/handlers/registry"
	"cpis/profiles/quality"
)

// DefaultQualityMaxPerRule is how many findings of each rule the
// $data-quality report lists when Deps.QualityMaxPerRule is 0.
const DefaultQualityMaxPerRule = 100

// qualityCursorType binds sealed $data-quality page links to it: a search's
// link is refused here and this one in a search.
const qualityCursorType = "$data-quality"

// qualityRequest is a $data-quality request: the whole report (rule empty),
// or a page of one rule's findings.
type qualityRequest struct {
	rule   quality.Rule
	count  int
	after  quality.Key
	cursor string // the sealed link this page was asked by, if any
}

// dataQuality serves GET [base]/$data-quality: the calling local
// authority's data-quality report as one OperationOutcome, every rule's
// count exact and at most QualityMaxPerRule findings of each listed; and
// GET [base]/$data-quality?rule=<code>[&_count=N]: one rule's findings in
// full, as a searchset Bundle of pages (total the rule's count, a next
// link while there are more), each finding an OperationOutcome entry.
func (s *Server) dataQuality(c *gin.Context) error {
	if err := registry.MayReadQuality(principal(c)); err != nil {
		return err
	}
	req, err := s.parseQuality(c)
	if err != nil {
		return err
	}
	if req.rule == "" {
		res, err := s.reg.DataQuality(c.Request.Context(), caller(c, false), s.Quality, quality.Listing{PerRule: s.qualityMaxPerRule()})
		if err != nil {
			return err
		}
		more := func(r quality.Rule) string {
			return fmt.Sprintf("GET %s/$data-quality?rule=%s lists them all: a searchset Bundle of pages (_count up to %d), each Bundle's next link giving the page after it",
				s.BaseURL, r, fhir.MaxCount)
		}
		s.writeJSON(c, http.StatusOK, quality.ReportOutcome(res, more).JSON())
		return nil
	}
	res, err := s.reg.DataQuality(c.Request.Context(), caller(c, false), s.Quality,
		quality.Listing{PerRule: req.count, Rule: req.rule, After: req.after})
	if err != nil {
		return err
	}
	total := res.Counts[req.rule]
	b := &fhir.Bundle{Type: "searchset", Total: &total, Timestamp: fhir.Instant(s.now())}
	query := "rule=" + string(req.rule) + "&_count=" + strconv.Itoa(req.count)
	self := s.BaseURL + "/$data-quality?" + query
	if req.cursor != "" {
		self = s.BaseURL + "/$data-quality?_cursor=" + queryEscape(req.cursor)
	}
	b.Link = append(b.Link, fhir.Link{Relation: "self", URL: self})
	if n := len(res.Listed); n > 0 && res.Unlisted[req.rule] > 0 {
		pc := pageCursor{Caller: callerID(principal(c)), Type: qualityCursorType, Query: query,
			Store: qualityPosition(res.Listed[n-1].Key()), Expires: s.now().Add(searchCursorTTL).Unix()}
		b.Link = append(b.Link, fhir.Link{Relation: "next", URL: s.BaseURL + "/$data-quality?_cursor=" + s.cursors.seal(pc)})
	}
	for _, f := range res.Listed {
		oo := &fhir.OperationOutcome{ResourceType: "OperationOutcome", Meta: &fhir.Meta{Profile: []string{fhir.UKCoreOperationOutcome}},
			Issue: []fhir.OutcomeIssue{quality.FindingIssue(f)}}
		b.Entry = append(b.Entry, fhir.Entry{Resource: oo.JSON(), Search: &fhir.EntrySearch{Mode: "match"}})
	}
	s.writeJSON(c, http.StatusOK, b.AppendJSON(nil))
	return nil
}

func (s *Server) qualityMaxPerRule() int {
	if s.QualityMaxPerRule > 0 {
		return s.QualityMaxPerRule
	}
	return DefaultQualityMaxPerRule
}

// parseQuality reads a $data-quality request's parameters: none (the
// report), rule and _count (a rule's first page; _count defaults to the
// report's per-rule limit, and above fhir.MaxCount is fhir.MaxCount), or a
// page link's _cursor alone. Anything else is a 400 that names it.
func (s *Server) parseQuality(c *gin.Context) (qualityRequest, error) {
	raw := c.Request.URL.RawQuery
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return qualityRequest{}, fhir.Errorf(fhir.KindInvalid, "The query string is malformed")
	}
	var req qualityRequest
	if cur := vals.Get("_cursor"); cur != "" {
		if !onlyCursor(raw) {
			return req, fhir.At(fhir.KindInvalid, "_cursor", "A paging link carries the whole request; follow it as given, without other parameters")
		}
		pc, err := s.cursors.open(cur, principal(c), qualityCursorType, s.now())
		if err != nil {
			return req, err
		}
		if vals, err = url.ParseQuery(pc.Query); err != nil {
			return req, fhir.At(fhir.KindInvalid, "_cursor", "The paging link is not valid")
		}
		req.cursor = cur
		id, rel, _ := strings.Cut(pc.Store, " ")
		req.after = quality.Key{ID: id, Related: rel}
	}
	for name, vs := range vals {
		switch name {
		case "rule", "_count", "_cursor", "_format", "_pretty":
			if len(vs) > 1 {
				return req, fhir.At(fhir.KindInvalid, name, "%s may be given once", name)
			}
		default:
			return req, fhir.At(fhir.KindInvalid, name, "Unknown parameter %s: $data-quality takes rule and _count (or a page link's _cursor)", name)
		}
	}
	code := vals.Get("rule")
	if _, ok := vals["rule"]; ok {
		r, known := quality.ParseRule(code)
		if !known {
			return req, fhir.At(fhir.KindInvalid, "rule", "Unknown data-quality rule %q: rule must be a code of %s", code, quality.RuleSystem)
		}
		req.rule = r
	}
	if n, ok := vals["_count"]; ok {
		if req.rule == "" {
			return req, fhir.At(fhir.KindInvalid, "_count", "_count pages one rule's findings: give rule too")
		}
		v, err := strconv.Atoi(n[0])
		if err != nil || v < 1 {
			return req, fhir.At(fhir.KindInvalid, "_count", "_count must be a whole number from 1 to %d", fhir.MaxCount)
		}
		req.count = min(v, fhir.MaxCount)
	} else if req.rule != "" {
		req.count = min(s.qualityMaxPerRule(), fhir.MaxCount)
	}
	return req, nil
}

// qualityPosition is a finding's key as a page link carries it: the
// resource id, a space, and the related reference (ids hold no space).
func qualityPosition(k quality.Key) string {
	if k.Related == "" {
		return k.ID
	}
	return k.ID + " " + k.Related
}
