package handlers

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"cpis/auth"
	"cpis/fhir"
	"cpis/store"
)

// apply writes entries as one unit, all or none: a whole transaction, or
// one entry of a batch. It resolves each entry against the store (ids,
// current versions, ownership, If-Match), derives the records (plans with
// their Flags) and commits them in one store.Commit. A commit that loses a
// race (a version changed, or a conditional create met a racing one) is
// resolved again from the start; an entry whose ifMatch no longer holds then
// fails with 412.
func (s *Server) apply(ctx context.Context, p *auth.Principal, entries []*bundleEntry, names laNames) ([]entryResult, error) {
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			// A unit of many entries has a wider window than a single write
			// for others to change what it read: back off a little, at
			// random, so that units racing each other do not collide again.
			select {
			case <-time.After(time.Duration(rand.Int64N(int64(attempt) * int64(time.Millisecond)))):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		writes, results, err := s.resolve(ctx, p, entries, names)
		if err != nil {
			return nil, err
		}
		if len(writes) == 0 {
			return results, nil
		}
		err = s.Store.Commit(ctx, writes)
		var ue *store.UniqueError
		switch {
		case err == nil:
			return results, nil
		case errors.Is(err, store.ErrVersionConflict) && attempt < maxUnitAttempts:
			continue
		case errors.As(err, &ue) && racedCreate(entries, ue) && attempt < maxUnitAttempts:
			continue // another request created it first: look again
		case errors.Is(err, store.ErrVersionConflict):
			fe := conflict("The resources were changed by other requests while this Bundle was being applied; send it again")
			fe.Err = err
			return nil, fe
		case errors.As(err, &ue):
			return nil, uniqueClash(entries, ue, err)
		}
		return nil, err
	}
}

// maxUnitAttempts bounds the attempts of a Bundle's unit that keeps losing
// races; then the client is told to send it again.
const maxUnitAttempts = 32

// target is where one entry writes, as resolved in one attempt.
type target struct {
	id     string
	cur    store.Record // the current record (zero if there is none)
	exists bool         // there is a record with that id, perhaps a tombstone
	found  bool         // a conditional create found its resource: nothing to write
}

// resolve decides the writes of one attempt: every entry's target, checked
// as the single write would be, then the records. Problems of every entry
// are reported together.
func (s *Server) resolve(ctx context.Context, p *auth.Principal, entries []*bundleEntry, names laNames) ([]store.Write, []entryResult, error) {
	targets := make([]target, len(entries))
	var errs []*fhir.Error
	for i, e := range entries {
		t, err := s.target(ctx, p, e)
		var fe *fhir.Error
		switch {
		case errors.As(err, &fe):
			errs = append(errs, atEntry(e.index, e.typ, fe))
		case err != nil:
			return nil, nil, err // the store, not the entry
		}
		targets[i] = t
	}
	if len(errs) == 0 {
		errs = sameTargets(entries, targets)
	}
	if err := joinErrors(errs); err != nil {
		return nil, nil, err
	}

	// References to other entries' fullUrls become Type/id.
	urls := map[string]string{}
	for i, e := range entries {
		if e.fullURL != "" {
			urls[e.fullURL] = e.typ + "/" + targets[i].id
		}
	}
	for _, e := range entries {
		for _, r := range e.refs {
			r.obj["reference"] = urls[r.to]
		}
	}

	now := s.now()
	var deletes, writes []store.Write
	results := make([]entryResult, len(entries))
	for i, e := range entries {
		t := targets[i]
		live := t.exists && !t.cur.Deleted
		switch {
		case t.found:
			results[i] = entryResult{rec: t.cur, status: http.StatusOK, note: "Found " + e.typ + "/" + t.id + " by " + e.key + ": nothing created"}
		case e.method == http.MethodDelete:
			if !live {
				results[i] = entryResult{rec: t.cur, status: http.StatusOK, deleted: true, note: deletedIssue(t.cur, true).Diagnostics}
				continue
			}
			tomb := tombstone(t.cur, now)
			deletes = append(deletes, store.Write{Record: tomb, Expect: t.cur.Version})
			results[i] = entryResult{rec: tomb, status: http.StatusOK, deleted: true, note: deletedIssue(tomb, false).Diagnostics}
		default:
			name, err := s.cachedLAName(ctx, e.in, names)
			if err != nil {
				return nil, nil, err
			}
			if live && s.unchanged(e, t, name) {
				results[i] = entryResult{rec: t.cur, status: http.StatusOK,
					note: "Unchanged: " + e.typ + "/" + t.id + " version " + strconv.FormatInt(t.cur.Version, 10) + " already has this content"}
				continue
			}
			rec := s.record(e.typ, t.id, e.in, t.cur.Version+1, now, name)
			writes = append(writes, store.Write{Record: rec, Expect: t.cur.Version})
			verb, status := "Created ", http.StatusCreated
			if live {
				verb, status = "Updated ", http.StatusOK
			}
			results[i] = entryResult{rec: rec, status: status, note: verb + e.typ + "/" + t.id + " version " + strconv.FormatInt(rec.Version, 10)}
		}
	}
	// Deletes first, so that an identifier a deleted plan held is free for
	// the plan that takes it over.
	return append(deletes, writes...), results, nil
}

// target resolves one entry: the id it writes and the record it replaces,
// with the checks of the single write (the caller manages it; If-Match).
func (s *Server) target(ctx context.Context, p *auth.Principal, e *bundleEntry) (target, error) {
	var t target
	switch {
	case e.key != "":
		id, match, err := s.conditionalTarget(ctx, p, e.typ, e.key, e.in, e.ifMatch, e.method == http.MethodPost)
		if err != nil {
			return t, err
		}
		t.id = id
		if match != nil {
			t.cur, t.exists, t.found = *match, true, e.method == http.MethodPost
			if t.found {
				return t, nil
			}
			return t, putCheck(p, e.typ, id, t.cur, true, e.ifMatch)
		}
		if id != e.in.id {
			return t, nil // a new id: nothing there yet
		}
	case e.method == http.MethodPost:
		t.id = s.NewID()
		return t, nil
	default:
		t.id = e.id
	}
	cur, err := s.Store.Get(ctx, e.typ, t.id)
	switch {
	case err == nil && e.method == http.MethodDelete && cur.Owner != p.OrgCode:
		// Another's resource is not found, the very answer a missing id gets.
		return t, fhir.Errorf(fhir.CodeNotFound, "%s/%s does not exist", e.typ, t.id)
	case err == nil:
		t.cur, t.exists = cur, true
	case !errors.Is(err, store.ErrNotFound):
		return t, err
	case e.method == http.MethodDelete:
		return t, fhir.Errorf(fhir.CodeNotFound, "%s/%s does not exist", e.typ, t.id)
	}
	return t, putCheck(p, e.typ, t.id, t.cur, t.exists, e.ifMatch)
}

// unchanged reports whether writing the entry would store exactly what the
// current version holds (the resource and its derived Flag); then nothing
// is written and the version stays.
func (s *Server) unchanged(e *bundleEntry, t target, name string) bool {
	same := s.record(e.typ, t.id, e.in, t.cur.Version, t.cur.Updated, name)
	if !bytes.Equal(same.Body, t.cur.Body) || (same.Derived == nil) != (t.cur.Derived == nil) {
		return false
	}
	if d, c := same.Derived, t.cur.Derived; d != nil {
		return d.Type == c.Type && bytes.Equal(d.Body, c.Body) && d.Ends.Equal(c.Ends)
	}
	return true
}

// laNames caches local authority names by ODS code for one request, so a
// Bundle of plans looks its LA up once.
type laNames map[string]string

func (s *Server) cachedLAName(ctx context.Context, in *incoming, names laNames) (string, error) {
	if in.plan == nil || in.plan.LAName != "" {
		return s.laName(ctx, in)
	}
	if n, ok := names[in.plan.LA]; ok {
		return n, nil
	}
	n, err := s.laName(ctx, in)
	if err == nil {
		names[in.plan.LA] = n
	}
	return n, err
}

// duplicates finds entries that name the same resource: the same Type/id,
// the same identifier condition, or the same fullUrl. A transaction may name
// each resource once. Two resources carrying one identifier would clash on
// its unique key, so they are refused here too.
func duplicates(entries []*bundleEntry) []*fhir.Error {
	var errs []*fhir.Error
	seen := map[string]int{}
	for _, e := range entries {
		if e.err != nil {
			continue
		}
		var names []string
		if e.id != "" {
			names = append(names, e.typ+"/"+e.id)
		}
		if e.key != "" {
			names = append(names, e.typ+"?identifier="+e.key)
		}
		if e.fullURL != "" {
			names = append(names, "fullUrl "+e.fullURL)
		}
		if e.in != nil {
			for _, k := range e.in.keys() {
				names = append(names, e.typ+" identifier "+k)
			}
		}
		for _, n := range names {
			if j, ok := seen[n]; ok {
				errs = append(errs, fhir.At(fhir.CodeInvalidValue, entryPath(e.index), "%s and %s both name %s; a transaction may name each resource once", entryPath(j), entryPath(e.index), n))
				break // one issue per entry
			}
			seen[n] = e.index
		}
	}
	return errs
}

// sameTargets finds entries that resolved to the same resource, such as a
// conditional update that found the resource another entry names by id.
func sameTargets(entries []*bundleEntry, targets []target) []*fhir.Error {
	var errs []*fhir.Error
	seen := map[string]int{}
	for i, e := range entries {
		n := e.typ + "/" + targets[i].id
		if j, ok := seen[n]; ok {
			errs = append(errs, fhir.At(fhir.CodeInvalidValue, entryPath(e.index), "%s and %s both write %s; a transaction may name each resource once", entryPath(j), entryPath(e.index), n))
			continue
		}
		seen[n] = e.index
	}
	return errs
}

// references checks that every reference to an entry (urn:uuid:, urn:oid:)
// names the fullUrl of an entry of the transaction.
func references(entries []*bundleEntry) []*fhir.Error {
	urls := map[string]bool{}
	for _, e := range entries {
		if e.fullURL != "" {
			urls[e.fullURL] = true
		}
	}
	var errs []*fhir.Error
	for _, e := range entries {
		for _, r := range e.refs {
			if !urls[r.to] && !strings.Contains(r.to, "?") {
				errs = append(errs, fhir.At(fhir.CodeInvalidValue, r.path, "%s is not the fullUrl of an entry in this Bundle", clip(r.to)))
			}
		}
	}
	return errs
}

// batchReferences refuses references to other entries in a batch: its
// entries are applied on their own, so they cannot depend on each other.
func batchReferences(e *bundleEntry) []*fhir.Error {
	var errs []*fhir.Error
	for _, r := range e.refs {
		if !strings.Contains(r.to, "?") {
			errs = append(errs, fhir.At(fhir.CodeInvalidValue, r.path, "A batch entry cannot refer to another entry (%s); send a transaction", clip(r.to)))
		}
	}
	return errs
}

// racedCreate reports whether a unique-key clash is on the condition of a
// conditional entry: another request created that resource first.
func racedCreate(entries []*bundleEntry, ue *store.UniqueError) bool {
	for _, e := range entries {
		if e.in != nil && e.key != "" && storeKey(e.in.owner(), e.key) == ue.Key && e.typ == ue.Type {
			return true
		}
	}
	return false
}

// uniqueClash names the entry whose resource carries an identifier another
// resource holds.
func uniqueClash(entries []*bundleEntry, ue *store.UniqueError, err error) error {
	for _, e := range entries {
		if e.in != nil && e.typ == ue.Type && slices.Contains(e.in.keys(), ue.Key) {
			fe := fhir.Wrap(fhir.CodePreconditionFailed, err, "The identifier %s already identifies another %s", keyToken(ue.Key), ue.Type)
			fe.Issues[0].Expression = []string{entryPath(e.index) + ".resource.identifier"}
			return fe
		}
	}
	return err
}
