package handlers

import (
	"strings"

	"cpis/fhir"
	"cpis/handlers/registry"
)

// change is the registry's change for a checked entry.
func (e *bundleEntry) change() registry.Change {
	ch := registry.Change{Type: e.typ, ID: e.id, Condition: e.key, In: e.in, IfMatch: e.ifMatch, At: entryPath(e.index), FullURL: e.fullURL}
	switch e.method {
	case "PUT":
		ch.Op = registry.Put
	case "POST":
		ch.Op = registry.Create
	case "DELETE":
		ch.Op = registry.Delete
	}
	for _, r := range e.refs {
		ch.Refs = append(ch.Refs, registry.Ref{Obj: r.obj, To: r.to})
	}
	return ch
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
			for _, k := range e.in.Keys() {
				names = append(names, e.typ+" identifier "+k)
			}
		}
		for _, n := range names {
			if j, ok := seen[n]; ok {
				errs = append(errs, fhir.As(fhir.At(fhir.KindInvalid, entryPath(e.index), "%s and %s both name %s; a transaction may name each resource once", entryPath(j), entryPath(e.index), n)))
				break // one issue per entry
			}
			seen[n] = e.index
		}
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
				errs = append(errs, fhir.As(fhir.At(fhir.KindInvalid, r.path, "%s is not the fullUrl of an entry in this Bundle", clip(r.to))))
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
			errs = append(errs, fhir.As(fhir.At(fhir.KindInvalid, r.path, "A batch entry cannot refer to another entry (%s); send a transaction", clip(r.to))))
		}
	}
	return errs
}
