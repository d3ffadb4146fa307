package registry

import (
	"context"
	"slices"
	"time"

	"cpis/auth"
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

// LAFeed returns up to limit accesses of owner's feed recorded at or after
// since (within retention), oldest first, after cursor, each with the body
// owner is served (its own view); and the cursor to continue from. The
// cursor is the store's: following it never skips or repeats an access.
func (r *Registry) LAFeed(ctx context.Context, owner string, since time.Time, cursor string, limit int) ([]store.AuditRecord, string, error) {
	if cutoff := r.RetainedSince(); since.Before(cutoff) {
		since = cutoff
	}
	c := Caller{P: laReader(owner)}
	recs, next, err := r.st.AuditFeed(ctx, owner, since, cursor, limit)
	if err != nil {
		return nil, "", storeErr(c, err)
	}
	recs, err = shownAll(c, recs)
	return recs, next, err
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
