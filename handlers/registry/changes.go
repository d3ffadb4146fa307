package registry

import (
	"context"
	"time"

	"cpis/auth"
	"cpis/fhir"
	"cpis/store"
)

// Window narrows a history to what changed: Since keeps the versions
// written at or after it (_since); AtFrom..AtTo (if AtFrom is set) keeps the
// versions that were current at some instant in [AtFrom, AtTo) (_at). Zero
// keeps every version.
type Window struct {
	Since        time.Time
	AtFrom, AtTo time.Time
}

// keep narrows versions (newest first) to the window. A version is current
// from its own time until the next version's (the newest until now).
func (w Window) keep(recs []store.Record) []store.Record {
	if w.Since.IsZero() && w.AtFrom.IsZero() {
		return recs
	}
	var out []store.Record
	for i, rec := range recs {
		if !w.Since.IsZero() && rec.Updated.Before(w.Since) {
			continue
		}
		if !w.AtFrom.IsZero() {
			if !rec.Updated.Before(w.AtTo) {
				continue // written after the period
			}
			if i > 0 && !recs[i-1].Updated.After(w.AtFrom) {
				continue // replaced before the period began
			}
		}
		out = append(out, rec)
	}
	return out
}

// TypeHistoryQuery is a type-level history as the handlers parsed it.
type TypeHistoryQuery struct {
	Type string
	// Since keeps versions written at or after it (_since; zero: all).
	Since time.Time
	// After continues after this position (zero: the first page).
	After store.HistoryPosition
	Limit int
	// Query is the request as the AuditEvent records it (Type/_history?...).
	Query string
}

// HistoryPage is one page of a type-level history: the versions, newest
// first (tombstones with a nil body), and, when the page is full, the
// position the next page continues after.
type HistoryPage struct {
	Versions []store.Record
	Next     *store.HistoryPosition
}

// TypeHistory returns the versions of a type's records that the calling
// local authority manages, newest first. It is a disclosure of many
// children at once, so only local authority systems may ask, and they see
// only versions they managed when they were written (Owner); health users
// are refused (403) and read a child's records by NHS number. The versions
// shown are audited as an LA's instance history is (one AuditEvent per
// child, recorded durably before the answer, not notified: nothing about an
// LA reading its own plans is sent to anyone). A Flag's history is its
// plan's versions as Flags; a plan's deletion is not a Flag version (the
// instance history of a Flag does not show it either).
func (r *Registry) TypeHistory(ctx context.Context, c Caller, q TypeHistoryQuery) (HistoryPage, error) {
	if c.Silent {
		return HistoryPage{}, fhir.Errorf(fhir.KindForbidden, "Access has been denied to process this request: a history is never a silent read")
	}
	if err := MayRead(c.P, q.Type, false); err != nil {
		return HistoryPage{}, err
	}
	if !c.P.IsLA() || c.P.Kind != auth.System {
		return HistoryPage{}, fhir.Errorf(fhir.KindForbidden, "Access has been denied to process this request: the history of a whole type is for local authority systems, of their own records; read a child's records by NHS number")
	}
	th, ok := r.st.(store.TypeHistorian)
	if !ok {
		return HistoryPage{}, fhir.Errorf(fhir.KindNotImplemented, "This server's database cannot read the history of a type")
	}
	if q.Limit <= 0 {
		return HistoryPage{}, nil
	}
	// Fetch one more than the page: the next link is given only when there
	// is more.
	sq := store.HistoryQuery{Type: storedType(q.Type), Owner: c.P.OrgCode, Since: q.Since, After: q.After, Limit: q.Limit + 1}
	if q.Type == "Flag" {
		sq.Type = "EpisodeOfCare"
	}
	retained := r.RetainedSince()
	var page HistoryPage
	var lastRead store.HistoryPosition
	for {
		recs, err := th.TypeHistory(ctx, sq)
		if err != nil {
			return HistoryPage{}, storeErr(c, err)
		}
		for _, rec := range recs {
			// Past retention a version is treated as gone, as everywhere,
			// even before the sweeper purges it; a plan's deletion is not a
			// Flag version.
			skip := !rec.End.IsZero() && rec.End.Before(retained)
			if q.Type == "Flag" {
				skip = skip || rec.Deleted || rec.Derived == nil || rec.Derived.Type != "Flag"
			}
			if !skip && len(page.Versions) == q.Limit {
				// There is more to show: the next page starts after what
				// this one read.
				page.Next = &lastRead
				break
			}
			lastRead = rec.Position()
			if skip {
				continue
			}
			if q.Type == "Flag" {
				rec.Type, rec.Body, rec.Ends, rec.Derived = "Flag", rec.Derived.Body, rec.Derived.Ends, nil
			}
			page.Versions = append(page.Versions, rec)
		}
		if page.Next != nil || len(recs) < sq.Limit {
			break
		}
		// Versions were skipped (a Flag history's tombstones, versions past
		// retention): read on from the last read.
		sq.After = lastRead
	}
	if PatientType(q.Type) {
		t := touched{}
		for _, rec := range page.Versions {
			if rec.Subject != "" && !rec.Deleted {
				t.add(rec)
			}
		}
		if err := r.audited(ctx, c, "history-type", q.Query, "", t); err != nil {
			return HistoryPage{}, err
		}
	}
	for i := range page.Versions {
		if !page.Versions[i].Deleted {
			page.Versions[i] = r.shown(page.Versions[i])
		}
	}
	return page, nil
}

// The orders a search may ask for (Search.Sort): the handlers name them
// here, as they use nothing of the store but its types.
const (
	SortID          = store.SortID
	SortUpdated     = store.SortUpdated
	SortUpdatedDesc = store.SortUpdatedDesc
	// SortDate and SortDateDesc are _sort=date and -date: by a plan's (and
	// its Flag's) period start; for AuditEvent, by recorded.
	SortDate     = store.SortStart
	SortDateDesc = store.SortStartDesc
)
