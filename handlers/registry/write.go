package registry

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"time"

	"cpis/auth"
	"cpis/fhir"
	"cpis/handlers/internal/parallel"
	"cpis/store"
)

// Op is what a change does.
type Op uint8

const (
	// Put creates or updates Type/ID, or, with a Condition, the one
	// resource with that identifier (a new one if there is none).
	Put Op = iota + 1
	// Create creates a resource with a new id, or, with a Condition, finds
	// the one with that identifier and writes nothing.
	Create
	// Delete writes a tombstone for Type/ID (and its derived Flag).
	Delete
)

// Mode is how a list of changes is applied.
type Mode uint8

const (
	// Single is one change of its own request (PUT, POST, DELETE).
	Single Mode = iota + 1
	// Transaction applies every change or none, in one store commit.
	Transaction
	// Batch applies each change on its own, in order; each result carries
	// its own error.
	Batch
)

// Change is one write: a single PUT, conditional PUT, POST or DELETE, or one
// Bundle entry. Every write goes through Apply.
type Change struct {
	Op   Op
	Type string
	ID   string // Put and Delete by id
	// Condition is an identifier (system|value) the write is by: a
	// conditional update (Put) or create (Create, If-None-Exist).
	Condition string
	In        *Incoming // Put and Create
	IfMatch   *int64
	// At is where problems with this change are reported: "" for a single
	// write (expressions are about the resource), Bundle.entry[i] for an
	// entry.
	At string
	// FullURL and Refs tie the entries of a transaction together: every
	// reference to another entry's fullUrl becomes Type/id once the ids are
	// known.
	FullURL string
	Refs    []Ref
}

// Ref is a reference in an incoming resource to another entry's fullUrl.
type Ref struct {
	Obj map[string]any // the Reference; its "reference" is rewritten
	To  string
}

// Result is what one applied change did.
type Result struct {
	Rec     store.Record // the version written, or the current one if nothing was
	Status  int          // 200 or 201
	Deleted bool
	// Already: a delete found the resource deleted; Unchanged: a write's
	// content was the current version's; Found: a conditional create found
	// its resource. Then nothing was written.
	Already, Unchanged, Found bool
	Note                      string // the informational outcome
	Err                       error  // Batch: this change's error
	// Warnings are the data-quality warnings of a plan as stored (see
	// warn): never a refusal. Answers add them to the outcome.
	Warnings []fhir.Issue
}

// The one retry policy of every write: a unit that loses a race (a version
// changed, or a conditional write met a racing create) is resolved again
// from the start, after a short random back-off, unless a change pinned its
// version with If-Match (then 412). A unit that keeps losing is 409: send it
// again.
const maxAttempts = 32

// Apply applies changes as mode says, as the caller. Each unit (the single
// change, the whole transaction, each batch entry) is resolved against the
// store (ids, current versions, ownership, If-Match), turned into records
// (plans with their Flags) and committed in one store.Commit.
//
// Unchanged content is not written again: a Put whose resource and Flag
// would be identical to the current version's answers 200 with the current
// version, so repeating a write keeps versions and history as they are.
func (r *Registry) Apply(ctx context.Context, c Caller, changes []Change, mode Mode) ([]Result, error) {
	names := laNames{}
	for _, ch := range changes {
		if mode == Transaction && ch.In != nil && ch.In.LA != nil {
			names[ch.In.LA.ODS] = ch.In.LA.Name // the name it will have when the transaction is applied
		}
	}
	switch mode {
	case Transaction:
		return r.unit(ctx, c, changes, names)
	case Batch:
		out := make([]Result, len(changes))
		for i := range changes {
			res, err := r.unit(ctx, c, changes[i:i+1], names)
			if err != nil {
				out[i] = Result{Err: err}
				continue
			}
			out[i] = res[0]
			if in := changes[i].In; in != nil && in.LA != nil {
				names[in.LA.ODS] = in.LA.Name
			}
		}
		return out, nil
	}
	if len(changes) != 1 {
		return nil, errors.New("registry: a single write is one change")
	}
	return r.unit(ctx, c, changes, names)
}

// unit applies changes all or none, with the one retry policy, and gives
// each applied plan its data-quality warnings (warn): the duplicate check's
// read runs beside the commit, so an upload waits for the longer of the
// two, not both. The caller must be allowed to write each change's type
// and manage its resource (the handlers check this too, to report it with
// the request's other problems).
func (r *Registry) unit(ctx context.Context, c Caller, changes []Change, names laNames) ([]Result, error) {
	var errs []*fhir.Error
	for _, ch := range changes {
		err := MayWrite(c.P, ch.Type)
		if err == nil && ch.In != nil {
			err = OwnWrite(c.P, ch.In)
		}
		if err != nil {
			errs = append(errs, fhir.As(fhir.Under(ch.At, ch.Type, err)))
		}
	}
	if err := fhir.Join(errs...); err != nil {
		return nil, err
	}
	pinned := slices.ContainsFunc(changes, func(ch Change) bool { return ch.IfMatch != nil })
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			// Back off a little, at random, so that units racing each
			// other do not collide again.
			select {
			case <-time.After(time.Duration(rand.Int64N(int64(attempt) * int64(time.Millisecond)))):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		writes, results, err := r.resolve(ctx, c, changes, names)
		if err != nil {
			return nil, err
		}
		if len(writes) == 0 {
			r.warn(ctx, c, results)
			return results, nil
		}
		var pc *planCheck
		read := parallel.Go(func() { pc = r.readPlans(ctx, c, results) })
		err = r.st.Commit(ctx, writes)
		read()
		var ue *store.UniqueError
		switch {
		case err == nil:
			r.addWarnings(results, pc)
			return results, nil
		case errors.Is(err, store.ErrVersionConflict) && pinned:
			return nil, fhir.Wrap(fhir.KindPreconditionFailed, err, "The resource was changed by another request after the version If-Match names; read it again and retry")
		case errors.Is(err, store.ErrVersionConflict) && attempt < maxAttempts:
			continue
		case errors.As(err, &ue) && racedCreate(changes, ue) && attempt < maxAttempts:
			continue // another request created it first: look again
		case errors.Is(err, store.ErrVersionConflict), errors.As(err, &ue) && racedCreate(changes, ue):
			return nil, fhir.Wrap(fhir.KindConflict, err, "The resources were changed by other requests while this write was being applied; send it again")
		case errors.As(err, &ue):
			return nil, uniqueClash(c, changes, ue, err)
		}
		return nil, storeErr(c, err)
	}
}

// target is where one change writes, as resolved in one attempt.
type target struct {
	id     string
	cur    store.Record // the current record (zero if there is none)
	exists bool         // there is a record with that id, perhaps a tombstone
	found  bool         // a conditional create found its resource: nothing to write
}

// resolve decides the writes of one attempt: every change's target, checked,
// then the records. Problems of every change are reported together.
func (r *Registry) resolve(ctx context.Context, c Caller, changes []Change, names laNames) ([]store.Write, []Result, error) {
	// Each change's store reads, on every core; new ids are given after,
	// one after another, so they follow the entries' order.
	held, err := r.holders(ctx, c, changes)
	if err != nil {
		return nil, nil, storeErr(c, err)
	}
	targets := make([]target, len(changes))
	terrs := make([]error, len(changes))
	parallel.Each(len(changes), minPerWorker, func(i int) {
		targets[i], terrs[i] = r.target(ctx, c, changes[i], held[changes[i].Type], pendingID)
	})
	var errs []*fhir.Error
	for i, ch := range changes {
		err := terrs[i]
		if fe := fhir.As(err); fe != nil {
			errs = append(errs, fhir.As(fhir.Under(ch.At, ch.Type, fe)))
		} else if err != nil {
			return nil, nil, storeErr(c, err) // the store, not the change
		}
		if targets[i].id == newIDPending {
			targets[i].id = r.newID()
		}
	}
	if len(errs) == 0 {
		errs = sameTargets(changes, targets)
	}
	if err := fhir.Join(errs...); err != nil {
		return nil, nil, err
	}

	// References to other entries' fullUrls become Type/id.
	urls := map[string]string{}
	for i, ch := range changes {
		if ch.FullURL != "" {
			urls[ch.FullURL] = ch.Type + "/" + targets[i].id
		}
	}
	for _, ch := range changes {
		for _, ref := range ch.Refs {
			ref.Obj["reference"] = urls[ref.To]
		}
	}

	now := r.Now()
	// The records of the resources written: their LA names first, one
	// after another (read once per LA), then the records themselves,
	// each from its own change only, on every core.
	nameOf := make([]string, len(changes))
	writing := func(i int) bool { return !targets[i].found && changes[i].Op != Delete }
	for i, ch := range changes {
		if writing(i) {
			name, err := r.laName(ctx, ch.In, names)
			if err != nil {
				return nil, nil, storeErr(c, err)
			}
			nameOf[i] = name
		}
	}
	recs := make([]store.Record, len(changes))
	same := make([]bool, len(changes))
	parallel.Each(len(changes), minPerWorker, func(i int) {
		ch, t := changes[i], targets[i]
		if !writing(i) {
			return
		}
		if t.exists && !t.cur.Deleted && r.unchanged(ch, t, nameOf[i]) {
			same[i] = true
			return
		}
		recs[i] = r.record(ch.Type, t.id, ch.In, t.cur.Version+1, now, nameOf[i])
	})
	var deletes, writes []store.Write
	results := make([]Result, len(changes))
	for i, ch := range changes {
		t := targets[i]
		live := t.exists && !t.cur.Deleted
		switch {
		case t.found:
			results[i] = Result{Rec: t.cur, Status: http.StatusOK, Found: true, Note: "Found " + ch.Type + "/" + t.id + " by " + ch.Condition + ": nothing created"}
		case ch.Op == Delete:
			if !live {
				results[i] = Result{Rec: t.cur, Status: http.StatusOK, Deleted: true, Already: true, Note: deletedNote(t.cur, true)}
				continue
			}
			tomb := tombstone(t.cur, now)
			deletes = append(deletes, store.Write{Record: tomb, Expect: t.cur.Version})
			results[i] = Result{Rec: tomb, Status: http.StatusOK, Deleted: true, Note: deletedNote(tomb, false)}
		default:
			if same[i] {
				results[i] = Result{Rec: t.cur, Status: http.StatusOK, Unchanged: true,
					Note: "Unchanged: " + ch.Type + "/" + t.id + " version " + strconv.FormatInt(t.cur.Version, 10) + " already has this content"}
				continue
			}
			rec := recs[i]
			writes = append(writes, store.Write{Record: rec, Expect: t.cur.Version})
			verb, status := "Created ", http.StatusCreated
			if live {
				verb, status = "Updated ", http.StatusOK
			}
			results[i] = Result{Rec: rec, Status: status, Note: verb + ch.Type + "/" + t.id + " version " + strconv.FormatInt(rec.Version, 10)}
		}
	}
	// Deletes first, so that an identifier a deleted plan held is free for
	// the plan that takes it over.
	return append(deletes, writes...), results, nil
}

// newIDPending stands for a new id in a target until resolve gives it:
// target is called for every change at once, and ids are given in the
// changes' order. It is no valid id, so no resource carries it.
const newIDPending = "\x00new"

// pendingID is target's newID while changes are resolved at once.
func pendingID() string { return newIDPending }

// holders reads, by type, the records holding the identifiers the
// conditional changes are written by (the caller's own keys): one read a
// type for the whole unit.
func (r *Registry) holders(ctx context.Context, c Caller, changes []Change) (map[string]map[string]store.Record, error) {
	keys := map[string][]string{}
	for _, ch := range changes {
		if ch.Condition != "" && ch.In.HasKey(ch.Condition) {
			keys[ch.Type] = append(keys[ch.Type], storeKey(c.P.OrgCode, ch.Condition))
		}
	}
	held := make(map[string]map[string]store.Record, len(keys))
	for typ, ks := range keys {
		recs, err := r.st.Holders(ctx, typ, ks)
		if err != nil {
			return nil, err
		}
		held[typ] = recs
	}
	return held, nil
}

// target resolves one change: the id it writes and the record it replaces,
// with the checks of every write (the caller manages it; If-Match). A
// conditional change's match is among held, the records holding its type's
// conditions (holders). A new id is newID's.
func (r *Registry) target(ctx context.Context, c Caller, ch Change, held map[string]store.Record, newID func() string) (target, error) {
	var t target
	switch {
	case ch.Condition != "":
		id, match, err := conditionalTarget(c.P, ch, held, newID)
		if err != nil {
			return t, err
		}
		t.id = id
		if match != nil {
			t.cur, t.exists, t.found = *match, true, ch.Op == Create
			if t.found {
				return t, nil
			}
			return t, putCheck(c.P, ch.Type, id, t.cur, true, ch.IfMatch)
		}
		if id != ch.In.ID {
			return t, nil // a new id: nothing there yet
		}
	case ch.Op == Create:
		t.id = newID()
		return t, nil
	default:
		t.id = ch.ID
	}
	cur, err := r.st.Get(ctx, ch.Type, t.id)
	switch {
	case err == nil && ch.Op == Delete && cur.Owner != c.P.OrgCode:
		// Another's resource is not found, the very answer a missing id gets.
		return t, fhir.Errorf(fhir.KindNotFound, "%s/%s does not exist", ch.Type, t.id)
	case err == nil:
		t.cur, t.exists = cur, true
	case !errors.Is(err, store.ErrNotFound):
		return t, err
	case ch.Op == Delete:
		return t, fhir.Errorf(fhir.KindNotFound, "%s/%s does not exist", ch.Type, t.id)
	}
	return t, putCheck(c.P, ch.Type, t.id, t.cur, t.exists, ch.IfMatch)
}

// conditionalTarget resolves the condition of a conditional write to the id
// to write: the resource holding the identifier key (match; keys are unique
// among a type's live records), or, if there is none, the id the resource
// carries or a new one. A conditional create always gets a new id.
func conditionalTarget(p *auth.Principal, ch Change, held map[string]store.Record, newID func() string) (id string, match *store.Record, err error) {
	typ, key, createOnly := ch.Type, ch.Condition, ch.Op == Create
	if !ch.In.HasKey(key) {
		return "", nil, fhir.At(fhir.KindInvalid, typ+".identifier", "The resource must carry the identifier %s it is written by", key)
	}
	rec, ok := held[storeKey(p.OrgCode, key)]
	switch {
	case !ok && ch.IfMatch != nil:
		return "", nil, fhir.Errorf(fhir.KindPreconditionFailed, "If-Match was given but no %s has the identifier %s", typ, key)
	case !ok && (ch.In.ID == "" || createOnly):
		return newID(), nil, nil
	case !ok:
		return ch.In.ID, nil, nil
	case rec.Owner != p.OrgCode:
		return "", nil, fhir.Errorf(fhir.KindForbidden, "Access has been denied to process this request: the identifier %s belongs to a resource managed by another organisation", key)
	case !createOnly && ch.In.ID != "" && ch.In.ID != rec.ID:
		return "", nil, fhir.At(fhir.KindInvalid, typ+".id", "The resource id %q does not match %s/%s, which has the identifier %s", ch.In.ID, typ, rec.ID, key)
	}
	return rec.ID, &rec, nil
}

// putCheck checks a write of typ/id over its current record (exists: there
// is one, perhaps a tombstone): If-Match, if given, must name its version,
// and the caller must manage it. A resource another organisation manages
// is told apart from a missing one only where it must be: with If-Match
// both are 412 alike; without, the id cannot be created, so the answer is
// 409 (the id is in use), which names no organisation and shows nothing of
// the resource.
func putCheck(p *auth.Principal, typ, id string, cur store.Record, exists bool, ifMatch *int64) error {
	foreign := exists && cur.Owner != p.OrgCode
	if ifMatch != nil && (!exists || foreign || cur.Deleted || cur.Version != *ifMatch) {
		return fhir.Errorf(fhir.KindPreconditionFailed, "If-Match names version %d, but %s/%s is not at that version", *ifMatch, typ, id)
	}
	if foreign {
		return fhir.Errorf(fhir.KindConflict, "The id %s/%s is already in use; choose another id, or write by identifier (PUT %s?identifier=system|value)", typ, id, typ)
	}
	return nil
}

// unchanged reports whether writing the change would store exactly what the
// current version holds (the resource and its derived Flag).
func (r *Registry) unchanged(ch Change, t target, name string) bool {
	same := r.record(ch.Type, t.id, ch.In, t.cur.Version, t.cur.Updated, name)
	if !bytes.Equal(same.Body, t.cur.Body) || (same.Derived == nil) != (t.cur.Derived == nil) {
		return false
	}
	if d, c := same.Derived, t.cur.Derived; d != nil {
		return d.Type == c.Type && bytes.Equal(d.Body, c.Body) && d.Ends.Equal(c.Ends)
	}
	return true
}

// tombstone is the record that deletes cur (and its derived record) at now.
func tombstone(cur store.Record, now time.Time) store.Record {
	tomb := store.Record{Type: cur.Type, ID: cur.ID, Version: cur.Version + 1, Updated: now, Deleted: true,
		Owner: cur.Owner, Subject: cur.Subject, End: now}
	if cur.Derived != nil {
		tomb.Derived = &store.Derived{Type: cur.Derived.Type}
	}
	return tomb
}

// deletedNote is the informational outcome of a delete.
func deletedNote(tomb store.Record, already bool) string {
	if already {
		return tomb.Type + "/" + tomb.ID + " was already deleted"
	}
	msg := "Deleted " + tomb.Type + "/" + tomb.ID
	if tomb.Derived != nil {
		msg += " and its " + tomb.Derived.Type
	}
	return msg
}

// sameTargets finds changes that resolved to the same resource, such as a
// conditional update that found the resource another entry names by id.
func sameTargets(changes []Change, targets []target) []*fhir.Error {
	var errs []*fhir.Error
	seen := map[string]string{}
	for i, ch := range changes {
		n := ch.Type + "/" + targets[i].id
		if at, ok := seen[n]; ok {
			errs = append(errs, fhir.As(fhir.At(fhir.KindInvalid, ch.At, "%s and %s both write %s; a transaction may name each resource once", at, ch.At, n)))
			continue
		}
		seen[n] = ch.At
	}
	return errs
}

// racedCreate reports whether a unique-key clash is on the condition of a
// conditional change: another request created that resource first.
func racedCreate(changes []Change, ue *store.UniqueError) bool {
	for _, ch := range changes {
		if ch.In != nil && ch.Condition != "" && storeKey(ch.In.Owner(), ch.Condition) == ue.Key && ch.Type == ue.Type {
			return true
		}
	}
	return false
}

// uniqueClash names the change whose resource carries an identifier another
// resource holds.
func uniqueClash(c Caller, changes []Change, ue *store.UniqueError, err error) error {
	for _, ch := range changes {
		if ch.In != nil && ch.Type == ue.Type && slices.Contains(ch.In.Keys(), ue.Key) {
			return fhir.Under(ch.At, ch.Type, fhir.At(fhir.KindPreconditionFailed, ch.Type+".identifier", "The identifier %s already identifies another %s", keyToken(ue.Key), ue.Type))
		}
	}
	return storeErr(c, err)
}

// minPerWorker is the fewest of a transaction's entries worth a goroutine
// of their own: a single write, or a small batch, stays on the request's
// goroutine (parallel.Each).
const minPerWorker = 8
