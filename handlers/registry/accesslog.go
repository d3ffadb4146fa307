package registry

import (
	"context"
	"slices"
	"time"

	"cpis/fhir"
	"cpis/store"
)

// Access history rules (contract section 6).
const (
	historyEntries = 25
	repeatWindow   = 24 * time.Hour
	// historyWindow bounds the accesses read to build the history: a child
	// accessed more than this often is judged on the most recent ones.
	historyWindow = 2000
)

// AccessHistory returns, as the caller may see them (shownTo), the 25 most recent accesses to a patient's records
// recorded at or after since, oldest first, counting one user's repeat
// accesses within 24 hours once (the first). A local authority sees only
// accesses to its own children. The history tells whether the child is on a
// plan (each event says how many plans its access found), so reading it is
// an access like a search: audited before it returns (query is the search as
// the AuditEvent records it), the LAs managing the child told.
func (r *Registry) AccessHistory(ctx context.Context, c Caller, subject string, since time.Time, query string) ([]store.AuditRecord, error) {
	if err := MayRead(c.P, "AuditEvent", c.Silent); err != nil {
		return nil, err
	}
	// The most recent accesses, enough for the 25 shown after repeats are
	// counted once; an access's repeats are judged within this window. They
	// are read without their bodies: only the 25 kept are fetched whole.
	heads, err := r.st.AuditHeadsBySubject(ctx, subject, time.Time{}, historyWindow)
	if err != nil {
		return nil, storeErr(c, err)
	}
	for _, h := range heads {
		if h.Subject != subject {
			return nil, r.indexMismatch(ctx, c, "AuditEvent", h.ID)
		}
	}
	// Once no plan of the patient is retained, accesses older than the
	// retention period are not served (the sweeper purges them).
	cutoff := r.RetainedSince()
	planRecs, plans, err := r.st.Search(ctx, store.Query{Type: "EpisodeOfCare", Subject: subject, RetainedSince: cutoff, Limit: fhir.MaxCount, Count: true})
	if err != nil {
		return nil, storeErr(c, err)
	}
	if err := r.checkSubjects(ctx, c, subject, planRecs); err != nil {
		return nil, err
	}
	if plans == 0 && since.Before(cutoff) {
		since = cutoff
	}
	last := map[string]time.Time{}
	var kept []store.AuditRecord
	for _, a := range heads {
		if c.P.IsLA() && !slices.Contains(a.Owners, c.P.OrgCode) {
			continue
		}
		if prev, ok := last[a.Agent]; ok && a.Recorded.Sub(prev) < repeatWindow {
			continue
		}
		last[a.Agent] = a.Recorded
		if !a.Recorded.Before(since) {
			kept = append(kept, a)
		}
	}
	if len(kept) > historyEntries {
		kept = kept[len(kept)-historyEntries:]
	}
	recs, err := r.bodiesOf(ctx, c, subject, kept)
	if err != nil {
		return nil, err
	}
	t := touched{}
	t.see(subject)
	for _, p := range planRecs {
		t.add(p)
	}
	if err := r.audited(ctx, c, "search-type", query, "", t); err != nil {
		return nil, err
	}
	return shownAll(c, recs)
}

// bodiesOf reads the whole access records of the heads kept, in their
// order, and checks each is the record its head named and about the patient
// asked (by its stored subject and its body). A record purged between the
// two reads is left out, as if it had been purged before.
func (r *Registry) bodiesOf(ctx context.Context, c Caller, subject string, kept []store.AuditRecord) ([]store.AuditRecord, error) {
	if len(kept) == 0 {
		return nil, nil
	}
	seqs := make([]int64, len(kept))
	want := make(map[int64]string, len(kept))
	for i, h := range kept {
		seqs[i] = h.Seq
		want[h.Seq] = h.ID
	}
	recs, err := r.st.AuditBodies(ctx, seqs)
	if err != nil {
		return nil, storeErr(c, err)
	}
	for _, a := range recs {
		if id, ok := want[a.Seq]; !ok || id != a.ID {
			return nil, r.indexMismatch(ctx, c, "AuditEvent", a.ID)
		}
	}
	if err := r.checkAuditSubjects(ctx, c, subject, recs); err != nil {
		return nil, err
	}
	return recs, nil
}

// FeedPage is one page of a local authority's notification feed.
type FeedPage struct {
	Events []store.AuditRecord
	// Next is the cursor to continue from ("" if none).
	Next string
	// Total counts the whole feed from the date, wherever the page is.
	Total int
}

// Feed returns one page of a local authority's notification feed: accesses
// to its children recorded at or after since (within retention), oldest
// first. The cursor is the store's, so following it never skips or repeats
// an access, even while new ones are recorded.
func (r *Registry) Feed(ctx context.Context, c Caller, since time.Time, cursor string, limit int) (FeedPage, error) {
	if err := MayRead(c.P, "AuditEvent", c.Silent); err != nil {
		return FeedPage{}, err
	}
	if !c.P.IsLA() {
		return FeedPage{}, fhir.Errorf(fhir.KindInvalidSearch, "The access feed is for local authorities; search the access history by the patient's NHS number")
	}
	if cutoff := r.RetainedSince(); since.Before(cutoff) {
		since = cutoff
	}
	recs, next, err := r.st.AuditFeed(ctx, c.P.OrgCode, since, cursor, limit)
	if err != nil {
		return FeedPage{}, storeErr(c, err)
	}
	total, err := r.st.AuditFeedTotal(ctx, c.P.OrgCode, since)
	if err != nil {
		return FeedPage{}, storeErr(c, err)
	}
	if recs, err = shownAll(c, recs); err != nil {
		return FeedPage{}, err
	}
	return FeedPage{Events: recs, Next: next, Total: total}, nil
}

// shownAll gives each access record the body the caller is shown of it: a
// health user the whole AuditEvent, a local authority its own view.
func shownAll(c Caller, recs []store.AuditRecord) ([]store.AuditRecord, error) {
	for i := range recs {
		body, err := shownTo(c.P, recs[i])
		if err != nil {
			return nil, err
		}
		recs[i].Body = body
	}
	return recs, nil
}
