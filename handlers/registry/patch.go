package registry

import (
	"context"

	"cpis/store"
)

// Editable returns the current version of typ/id for the caller to change
// (the base of a JSON Patch): a local authority allowed to write the type
// gets only what it manages; another's, or none, is not found, exactly as a
// read; a deleted resource is gone. It is not audited: like a PUT, it is a
// local authority working on its own record, and the change that follows
// goes through Apply with its version pinned.
func (r *Registry) Editable(ctx context.Context, c Caller, typ, id string) (store.Record, error) {
	if err := MayWrite(c.P, typ); err != nil {
		return store.Record{}, err
	}
	rec, err := r.st.Get(ctx, typ, id)
	if err != nil {
		return store.Record{}, storeErr(c, err)
	}
	if err := r.visible(c.P, rec); err != nil {
		return store.Record{}, err
	}
	if rec.Deleted {
		return gone(rec)
	}
	return rec, nil
}
