package registry

import (
	"context"
	"slices"
	"time"

	"cpis/auth"
	"cpis/fhir"
	"cpis/profiles"
	"cpis/store"
)

// The push delivery of a local authority's notification feed (handlers/
// notify) reads the same feed the authority polls, as the authority is
// served it: these are Feed's reads without a request, for a delivery
// running in the background on the authority's behalf.

// laReader is the principal a delivery reads an authority's feed as: its
// own view of each access, never more.
func laReader(owner string) *auth.Principal {
	return auth.NewPrincipal(auth.Principal{Kind: auth.System, OrgCode: owner, Subject: "notify"},
		[]auth.Permission{{Type: "AuditEvent", Access: auth.Read}})
}

// LAFeedHeads returns up to limit accesses of owner's feed recorded at or
// after since (within retention), oldest first, after cursor, and the
// cursor to continue from: heads only (Seq, ID, Recorded, Subject; no
// body), what numbering events needs. The cursor is the store's:
// following it never skips or repeats an access.
func (r *Registry) LAFeedHeads(ctx context.Context, owner string, since time.Time, cursor string, limit int) ([]store.AuditRecord, string, error) {
	if cutoff := r.RetainedSince(); since.Before(cutoff) {
		since = cutoff
	}
	c := Caller{P: laReader(owner)}
	st, ok := r.st.(store.Subscriptions)
	if !ok {
		return nil, "", fhir.Errorf(fhir.KindNotImplemented, "This server's database does not keep subscriptions")
	}
	recs, next, err := st.AuditFeedHeads(ctx, owner, since, cursor, limit)
	if err != nil {
		return nil, "", storeErr(c, err)
	}
	for i := range recs {
		recs[i].Body, recs[i].Views = nil, nil
	}
	return recs, next, nil
}

// LAPlanTypes returns the plan types (CPP, LAC, UCPP) of owner's plans
// about subject that are within retention: the plans an access to subject
// may have shown owner's part of. A subscription filtered by plan type
// numbers an access when one of them is of a type it asks for.
func (r *Registry) LAPlanTypes(ctx context.Context, owner, subject string) ([]string, error) {
	c := Caller{P: laReader(owner)}
	recs, _, err := r.st.Search(ctx, store.Query{Type: "EpisodeOfCare", Subject: subject, Owner: owner,
		RetainedSince: r.RetainedSince(), Limit: fhir.MaxCount})
	if err != nil {
		return nil, storeErr(c, err)
	}
	var out []string
	for _, rec := range recs {
		p, err := profiles.StoredPlan(rec.Body, r.loc)
		if err != nil {
			return nil, fhir.Wrap(fhir.KindInternal, err, "A stored plan could not be read")
		}
		if t := string(p.Type); t != "" && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out, nil
}

// LABodies returns the accesses with these sequence numbers as owner is
// served them, in the order given. An access that is not in owner's feed
// (not a notifying access to one of its children), or no longer stored, is
// left out: a notification never carries more than the authority may read.
func (r *Registry) LABodies(ctx context.Context, owner string, seqs []int64) ([]store.AuditRecord, error) {
	c := Caller{P: laReader(owner)}
	recs, err := r.st.AuditBodies(ctx, seqs)
	if err != nil {
		return nil, storeErr(c, err)
	}
	kept := recs[:0]
	for _, rec := range recs {
		if rec.Notify && slices.Contains(rec.Owners, owner) {
			kept = append(kept, rec)
		}
	}
	return shownAll(c, kept)
}
