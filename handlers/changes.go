package handlers

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"cpis/fhir"
	"cpis/handlers/registry"
	"cpis/store"
)

// What changed since (issue 15): _lastUpdated on the stored types' searches,
// _sort by _lastUpdated or _id with stable pages, and _since/_at on
// histories, with a type-level history for local authorities.

// lastUpdatedDoc is the _lastUpdated parameter's documentation.
const lastUpdatedDoc = "When the resource was last changed (meta.lastUpdated), with FHIR's date precision: a date is the whole day in " +
	"Europe/London, a dateTime to the second (or millisecond) it names. Prefixes eq (the default), gt, lt, ge, le, sa (same as gt), eb (same as lt) " +
	"and ap (the value widened by 10% of its distance from now); ne is refused (400). Repeat the parameter to give a range: " +
	"_lastUpdated=ge2026-12-01&_lastUpdated=lt2026-12-08."

func lastUpdatedParam() searchParam {
	return searchParam{Name: "_lastUpdated", Type: "date", Accepted: []string{"_lastUpdated"}, Kind: paramUpdated, Doc: lastUpdatedDoc}
}

// sortDoc documents _sort on the types that support it.
const sortDoc = " _sort: _id (the default), _lastUpdated (oldest first) or -_lastUpdated (newest first), each ending with the id so the " +
	"order is total. Any other _sort is ignored and reported in an OperationOutcome entry (400 with Prefer: handling=strict). Pages are " +
	"keyset pages: a record not changed while the pages are followed is served exactly once. A record changed meanwhile is served at most " +
	"once by _id (as its page finds it) and by -_lastUpdated (it moves to the front, so it is missed if its old place was not yet reached), " +
	"and at least once by _lastUpdated (it moves to the end, so it may come again with its new version); a record created meanwhile is " +
	"served if it falls after the page being read, and a record deleted meanwhile is not served once deleted. Start again with " +
	"_lastUpdated=ge{the time the first page was read} to see what changed during the paging."

// sortDateDoc documents _sort=date on plans and Flags.
const sortDateDoc = " _sort=date (earliest first) or -date (latest first): by the plan's period.start (a Flag's is its plan's), ending with the " +
	"id (descending with -date; date,_id and -date,-_id name the same orders). A start is the first instant it names: a date without a time (2024, 2024-03, 2024-03-05) from midnight " +
	"in Europe/London, so 2024 sorts before 2024-03 and a day before any time on it; a dateTime at its instant, whatever its offset; to " +
	"the millisecond. A record with no start (none is accepted today) comes last either way. Pages are keyset pages as above; a plan whose " +
	"start changes while the pages are followed moves, like a record changed under the other sorts."

// sorts are the _sort values the stored types support.
var sorts = map[string]store.Sort{"_id": registry.SortID, "_lastUpdated": registry.SortUpdated, "-_lastUpdated": registry.SortUpdatedDesc}

// dateSorts are the _sort values of the types with a date (resourceSpec.SortDate).
// The id is the tie-breaker, so it may also be named: date,_id and
// -date,-_id are the same orders (-date,_id is not served).
var dateSorts = map[string]store.Sort{"date": registry.SortDate, "-date": registry.SortDateDesc,
	"date,_id": registry.SortDate, "-date,-_id": registry.SortDateDesc}

// sortTags name the sorts by Updated and by start in paging positions, so
// a position is never read under another sort.
var sortTags = map[store.Sort]string{registry.SortUpdated: "u", registry.SortUpdatedDesc: "d", registry.SortDate: "s", registry.SortDateDesc: "r"}

// noStart is a position's start when its record has none.
const noStart = "-"

// updatedRange reads _lastUpdated values (each occurrence must hold, so
// they narrow one range) into [from, to).
func (s *Server) updatedRange(prms []fhir.Param) (from, to time.Time, err error) {
	for _, prm := range prms {
		if len(prm.Values) != 1 {
			return from, to, fhir.At(fhir.KindInvalidSearch, "_lastUpdated", "Give one value per _lastUpdated; repeat the parameter for a range")
		}
		d, ok := fhir.ParseDate(prm.Values[0], s.Location)
		if !ok {
			return from, to, fhir.At(fhir.KindInvalidSearch, "_lastUpdated", "_lastUpdated must be a date or dateTime with an optional prefix, e.g. _lastUpdated=ge2026-12-01")
		}
		var lo, hi time.Time // zero: unbounded
		switch d.Prefix {
		case "eq":
			lo, hi = d.Low, d.High
		case "gt", "sa":
			lo = d.High
		case "ge":
			lo = d.Low
		case "lt", "eb":
			hi = d.Low
		case "le":
			hi = d.High
		case "ap":
			gap := s.now().Sub(d.Low)
			if gap < 0 {
				gap = -gap
			}
			lo, hi = d.Low.Add(-gap/10), d.High.Add(gap/10)
		default:
			return from, to, fhir.At(fhir.KindInvalidSearch, "_lastUpdated", "_lastUpdated does not support the prefix %s; use lt and gt in two searches", d.Prefix)
		}
		if !lo.IsZero() && lo.After(from) {
			from = lo
		}
		if !hi.IsZero() && (to.IsZero() || hi.Before(to)) {
			to = hi
		}
	}
	return from, to, nil
}

// searchSort reads _sort for a type: the store's sort, and whether it is
// applied (else it is reported as ignored).
func searchSort(spec *resourceSpec, raw string) (store.Sort, bool) {
	if raw == "" {
		return registry.SortID, true
	}
	if srt, ok := sorts[raw]; ok && spec.Sorted {
		return srt, true
	}
	if srt, ok := dateSorts[raw]; ok && spec.SortDate {
		return srt, true
	}
	return registry.SortID, false
}

// isDateSort reports a sort by start.
func isDateSort(srt store.Sort) bool { return srt == registry.SortDate || srt == registry.SortDateDesc }

// position is a page's keyset position as a sealed cursor carries it: the
// id for the order by id (as before), else the sort's tag, the time (Unix
// nanoseconds of Updated; for a sort by start, Unix milliseconds of the
// start, or noStart) and the id.
func position(srt store.Sort, page registry.Page) string {
	last := page.Last
	tag, ok := sortTags[srt]
	switch {
	case !ok:
		return last.ID
	case isDateSort(srt) && page.LastStart.IsZero():
		return tag + "|" + noStart + "|" + last.ID
	case isDateSort(srt):
		return tag + "|" + strconv.FormatInt(page.LastStart.UnixMilli(), 10) + "|" + last.ID
	}
	return tag + "|" + strconv.FormatInt(last.Updated.UnixNano(), 10) + "|" + last.ID
}

// readPosition reads a position back for the sort into the search: a
// position written for another sort is refused.
func readPosition(srt store.Sort, pos string, q *registry.Search) error {
	bad := fhir.At(fhir.KindInvalidSearch, "_cursor", "The paging link does not match its search's sort; start the search again")
	if pos == "" {
		return nil
	}
	tag, ok := sortTags[srt]
	parts := strings.Split(pos, "|")
	if !ok {
		if len(parts) != 1 {
			return bad
		}
		q.After = pos
		return nil
	}
	if len(parts) != 3 || parts[0] != tag || parts[2] == "" {
		return bad
	}
	if isDateSort(srt) && parts[1] == noStart {
		q.After = parts[2]
		return nil
	}
	n, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return bad
	}
	q.After = parts[2]
	if isDateSort(srt) {
		q.AfterStart = time.UnixMilli(n).UTC()
	} else {
		q.AfterUpdated = time.Unix(0, n).UTC()
	}
	return nil
}

// historyParams are the parameters a history reads; others are ignored (400
// with Prefer: handling=strict).
var historyParams = map[string]bool{"_since": true, "_at": true, "_count": true, "_cursor": true, "_format": true, "_pretty": true, "silent": true}

// historyQuery reads a history's query: its window, count and cursor.
type historyQuery struct {
	window registry.Window
	since  string // _since as given, for the self and next links
	at     string // _at as given, for the self link
	count  int
	cursor string
}

func (s *Server) parseHistory(q url.Values, strict, typeLevel bool) (historyQuery, error) {
	hq := historyQuery{count: fhir.DefaultCount}
	var ignored []string
	for name := range q {
		if !historyParams[name] {
			ignored = append(ignored, name)
		}
	}
	if len(ignored) > 0 && strict {
		return hq, fhir.Errorf(fhir.KindInvalidSearch, "Unknown or unsupported history parameters: %s", strings.Join(ignored, ", "))
	}
	one := func(name string) (string, bool, error) {
		v, ok := q[name]
		if !ok {
			return "", false, nil
		}
		if len(v) != 1 {
			return "", false, fhir.At(fhir.KindInvalidSearch, name, "%s given more than once", name)
		}
		return v[0], true, nil
	}
	since, has, err := one("_since")
	if err != nil {
		return hq, err
	}
	if has {
		// An instant: a dateTime with its time zone (a date alone is taken
		// as its first instant in Europe/London).
		low, _, ok := fhir.ParseDateTime(since, s.Location)
		if !ok {
			return hq, fhir.At(fhir.KindInvalidSearch, "_since", "_since must be an instant, e.g. _since=2026-12-01T09:00:00Z")
		}
		hq.window.Since, hq.since = low, since
	}
	at, has, err := one("_at")
	if err != nil {
		return hq, err
	}
	if has {
		if typeLevel {
			return hq, fhir.At(fhir.KindInvalidSearch, "_at", "_at is supported on the history of one resource; use _since on the history of a type")
		}
		low, high, ok := fhir.ParseDateTime(at, s.Location)
		if !ok {
			return hq, fhir.At(fhir.KindInvalidSearch, "_at", "_at must be a date or dateTime, e.g. _at=2026-12-01")
		}
		hq.window.AtFrom, hq.window.AtTo, hq.at = low, high, at
	}
	if v, has, err := one("_count"); err != nil {
		return hq, err
	} else if has {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return hq, fhir.At(fhir.KindInvalidSearch, "_count", "_count must be a whole number from 0 to %d", fhir.MaxCount)
		}
		hq.count = min(n, fhir.MaxCount)
	}
	if hq.cursor, _, err = one("_cursor"); err != nil {
		return hq, err
	}
	return hq, nil
}

// historyCursor is what a type-level history's sealed paging link holds in
// pageCursor.Store: the position of the last version served.
func historyCursor(p store.HistoryPosition) string {
	return strconv.FormatInt(p.Updated.UnixNano(), 10) + "|" + strconv.FormatInt(p.Version, 10) + "|" + p.ID
}

func readHistoryCursor(v string) (store.HistoryPosition, bool) {
	parts := strings.SplitN(v, "|", 3)
	if len(parts) != 3 {
		return store.HistoryPosition{}, false
	}
	n, err1 := strconv.ParseInt(parts[0], 10, 64)
	ver, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil || parts[2] == "" {
		return store.HistoryPosition{}, false
	}
	return store.HistoryPosition{Updated: time.Unix(0, n).UTC(), Version: ver, ID: parts[2]}, true
}

// typeHistory serves GET /{type}/_history: the calling local authority's
// versions of the type, newest first, paged with sealed links.
func (s *Server) typeHistory(typ string) gin.HandlerFunc {
	return s.handle(func(c *gin.Context) error {
		silentParam, has := c.GetQuery("silent")
		silent, err := silentMode(c, silentParam, has)
		if err != nil {
			return err
		}
		who := caller(c, silent)
		if err := registry.MayRead(who.P, typ, false); err != nil {
			return err
		}
		hq, err := s.parseHistory(c.Request.URL.Query(), preferStrict(c), true)
		if err != nil {
			return err
		}
		cursorType := typ + "/_history"
		var after store.HistoryPosition
		if hq.cursor != "" {
			if !onlyCursor(c.Request.URL.RawQuery) {
				return fhir.At(fhir.KindInvalidSearch, "_cursor", "A paging link carries the whole request; follow it as given, without other parameters")
			}
			pc, err := s.cursors.open(hq.cursor, who.P, cursorType, s.now())
			if err != nil {
				return err
			}
			// The query the link was issued for: _since and _count.
			inner, err := url.ParseQuery(pc.Query)
			if err != nil {
				return fhir.At(fhir.KindInvalidSearch, "_cursor", "The paging link is not valid; start again")
			}
			cursor := hq.cursor
			if hq, err = s.parseHistory(inner, false, true); err != nil {
				return err
			}
			hq.cursor = cursor
			var ok bool
			if after, ok = readHistoryCursor(pc.Store); !ok {
				return fhir.At(fhir.KindInvalidSearch, "_cursor", "The paging link is not valid; start again")
			}
		}
		query := "_count=" + strconv.Itoa(hq.count)
		if hq.since != "" {
			query = "_since=" + queryEscape(hq.since) + "&" + query
		}
		page, err := s.reg.TypeHistory(c.Request.Context(), who, registry.TypeHistoryQuery{
			Type: typ, Since: hq.window.Since, After: after, Limit: hq.count, Query: typ + "/_history?" + query,
		})
		if err != nil {
			return err
		}
		b := &fhir.Bundle{Type: "history", Timestamp: fhir.Instant(s.now())}
		self := s.BaseURL + "/" + typ + "/_history?" + query
		if hq.cursor != "" {
			self = s.BaseURL + "/" + typ + "/_history?_cursor=" + queryEscape(hq.cursor)
		}
		b.Link = append(b.Link, fhir.Link{Relation: "self", URL: self})
		if page.Next != nil {
			pc := pageCursor{Caller: callerID(who.P), Type: cursorType, Query: query, Store: historyCursor(*page.Next), Expires: s.now().Add(searchCursorTTL).Unix()}
			b.Link = append(b.Link, fhir.Link{Relation: "next", URL: s.BaseURL + "/" + typ + "/_history?_cursor=" + s.cursors.seal(pc)})
		}
		for _, r := range page.Versions {
			b.Entry = append(b.Entry, historyEntry(s, r, r.Version == 1))
		}
		s.writeBundle(c, b)
		return nil
	})
}

// historyEntry is one version in a history Bundle: its request (PUT, or
// DELETE for a tombstone) and response. created says the version created
// the resource (201).
func historyEntry(s *Server, r store.Record, created bool) fhir.Entry {
	e := fhir.Entry{FullURL: s.fullURL(r.Type, r.ID)}
	method, status := http.MethodPut, "200 OK"
	if r.Deleted {
		method, status = http.MethodDelete, "204 No Content"
	} else {
		e.Resource = r.Body
		if created {
			status = "201 Created"
		}
	}
	e.Request = &fhir.EntryRequest{Method: method, URL: r.Type + "/" + r.ID}
	e.Response = &fhir.EntryResponse{Status: status, Etag: etag(r.Version), LastModified: fhir.Instant(r.Updated)}
	return e
}

// selfQuery is the window of an instance history as its self link gives it.
func (hq historyQuery) selfQuery() string {
	var parts []string
	if hq.since != "" {
		parts = append(parts, "_since="+queryEscape(hq.since))
	}
	if hq.at != "" {
		parts = append(parts, "_at="+queryEscape(hq.at))
	}
	if len(parts) == 0 {
		return ""
	}
	return "?" + strings.Join(parts, "&")
}
