// Package snapshot builds the snapshot of a FHIR R4 constraint profile from
// its differential and the base StructureDefinitions it constrains: the
// base resource's elements, with the datatype elements the differential
// reaches into expanded from the datatype definitions, slices added, and
// each differential element's constraints merged in.
//
// It implements the part of the FHIR snapshot algorithm the CP-IS profiles
// use: constraints on existing elements, descending into datatypes, and
// slices with their children. It refuses what it does not implement
// (re-slicing, contentReference, choice-type renaming) rather than guess.
package snapshot

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Definitions are base StructureDefinitions by type name (EpisodeOfCare,
// Reference, Identifier, ...), as decoded JSON.
type Definitions map[string]map[string]any

// Generate returns the profile with its snapshot: sd must be a constraint
// profile whose type is in base and whose differential elements all have
// an id. The profile is not modified.
func Generate(sd map[string]any, base Definitions) (map[string]any, error) {
	typ, _ := sd["type"].(string)
	b, ok := base[typ]
	if !ok {
		return nil, fmt.Errorf("snapshot: no base definition for %q", typ)
	}
	if want := "http://hl7.org/fhir/StructureDefinition/" + typ; sd["baseDefinition"] != want {
		return nil, fmt.Errorf("snapshot: %s: baseDefinition must be %s", sd["url"], want)
	}
	g := &gen{base: base, elems: elements(b, "snapshot")}
	if g.elems == nil {
		return nil, fmt.Errorf("snapshot: the base %s has no snapshot", typ)
	}
	g.elems = clone(g.elems).([]any)
	for _, d := range elements(sd, "differential") {
		dm, _ := d.(map[string]any)
		if err := g.apply(dm); err != nil {
			return nil, fmt.Errorf("snapshot: %s: %w", sd["url"], err)
		}
	}
	out := clone(sd).(map[string]any)
	out["snapshot"] = map[string]any{"element": g.elems}
	return out, nil
}

func elements(sd map[string]any, part string) []any {
	p, _ := sd[part].(map[string]any)
	els, _ := p["element"].([]any)
	return els
}

type gen struct {
	base  Definitions
	elems []any
}

func (g *gen) at(i int) map[string]any { return g.elems[i].(map[string]any) }

func (g *gen) find(id string) int {
	for i := range g.elems {
		if g.at(i)["id"] == id {
			return i
		}
	}
	return -1
}

// apply merges one differential element into the snapshot.
func (g *gen) apply(d map[string]any) error {
	id, _ := d["id"].(string)
	path, _ := d["path"].(string)
	if id == "" || path == "" {
		return fmt.Errorf("every differential element needs an id and a path")
	}
	if PathOf(id) != path {
		return fmt.Errorf("element %s: the path should be %s, not %s", id, PathOf(id), path)
	}
	i, err := g.ensure(id)
	if err != nil {
		return err
	}
	return merge(g.at(i), d)
}

// ensure finds the element with id, expanding its parent's datatype or
// creating its slice when the snapshot does not have it yet.
func (g *gen) ensure(id string) (int, error) {
	if i := g.find(id); i >= 0 {
		return i, nil
	}
	parent, last := splitID(id)
	if parent == "" {
		return -1, fmt.Errorf("element %s is not in the base", id)
	}
	if name, slice, ok := strings.Cut(last, ":"); ok {
		return g.addSlice(parent, name, slice)
	}
	pi, err := g.ensure(parent)
	if err != nil {
		return -1, err
	}
	if g.hasChildren(pi) {
		return -1, fmt.Errorf("element %s is not in the base (its parent %s has no child %s)", id, parent, last)
	}
	if err := g.expand(pi); err != nil {
		return -1, err
	}
	if i := g.find(id); i >= 0 {
		return i, nil
	}
	return -1, fmt.Errorf("element %s is not in the base", id)
}

func (g *gen) hasChildren(i int) bool {
	id := g.at(i)["id"].(string)
	return i+1 < len(g.elems) && strings.HasPrefix(g.at(i + 1)["id"].(string), id+".")
}

// end is the index after the element at i and everything under it
// (children and slices).
func (g *gen) end(i int) int {
	id := g.at(i)["id"].(string)
	j := i + 1
	for j < len(g.elems) {
		o := g.at(j)["id"].(string)
		if !strings.HasPrefix(o, id+".") && !strings.HasPrefix(o, id+":") {
			break
		}
		j++
	}
	return j
}

// expand inserts the children of a datatype element from its type's
// definition: Reference.identifier under EpisodeOfCare.patient becomes
// EpisodeOfCare.patient.identifier. base keeps the datatype's path, as in
// the FHIR snapshots.
func (g *gen) expand(i int) error {
	el := g.at(i)
	id, path := el["id"].(string), el["path"].(string)
	types, _ := el["type"].([]any)
	if len(types) != 1 {
		return fmt.Errorf("element %s has %d types; only single-typed elements are expanded", id, len(types))
	}
	code, _ := types[0].(map[string]any)["code"].(string)
	def, ok := g.base[code]
	if !ok {
		return fmt.Errorf("element %s: no base definition for its type %s", id, code)
	}
	var kids []any
	for _, e := range elements(def, "snapshot")[1:] {
		c := clone(e).(map[string]any)
		c["id"] = id + strings.TrimPrefix(c["id"].(string), code)
		c["path"] = path + strings.TrimPrefix(c["path"].(string), code)
		kids = append(kids, c)
	}
	g.insert(i+1, kids)
	return nil
}

// addSlice adds the slice name:slice of the element parent.name, after
// the element's children and earlier slices, with a copy of the
// element's children.
func (g *gen) addSlice(parent, name, slice string) (int, error) {
	sliced := name
	if parent != "" {
		sliced = parent + "." + name
	}
	si := g.find(sliced)
	if si < 0 {
		return -1, fmt.Errorf("slice %s:%s: no element %s", sliced, slice, sliced)
	}
	if _, ok := g.at(si)["slicing"]; !ok {
		return -1, fmt.Errorf("slice %s:%s: %s has no slicing", sliced, slice, sliced)
	}
	s := clone(g.at(si)).(map[string]any)
	delete(s, "slicing")
	// Each slice counts on its own: its min starts at 0, not the sliced
	// element's total.
	s["min"] = json.Number("0")
	sid := sliced + ":" + slice
	s["id"], s["sliceName"] = sid, slice
	group := []any{s}
	for j := si + 1; j < len(g.elems); j++ {
		cid := g.at(j)["id"].(string)
		if !strings.HasPrefix(cid, sliced+".") {
			break
		}
		c := clone(g.at(j)).(map[string]any)
		c["id"] = sid + strings.TrimPrefix(cid, sliced)
		group = append(group, c)
	}
	at := g.end(si)
	g.insert(at, group)
	return at, nil
}

func (g *gen) insert(at int, els []any) {
	g.elems = append(g.elems[:at], append(els, g.elems[at:]...)...)
}

// merge applies a differential element's constraints to a snapshot
// element. A profile may only narrow: min up, max down.
func merge(el, d map[string]any) error {
	id := el["id"].(string)
	for k, v := range d {
		switch k {
		case "id", "path":
		case "constraint":
			list, _ := el["constraint"].([]any)
			el["constraint"] = append(list, clone(v).([]any)...)
		case "min":
			if num(v) < num(el["min"]) {
				return fmt.Errorf("element %s: min %v is below the base's %v", id, v, el["min"])
			}
			el[k] = clone(v)
		case "max":
			if maxOf(v) > maxOf(el["max"]) {
				return fmt.Errorf("element %s: max %v is above the base's %v", id, v, el["max"])
			}
			el[k] = clone(v)
		case "slicing", "sliceName":
			if k == "sliceName" && el["sliceName"] != v {
				return fmt.Errorf("element %s: sliceName %v does not match the id", id, v)
			}
			el[k] = clone(v)
		default:
			if strings.HasPrefix(k, "fixed") || strings.HasPrefix(k, "pattern") || k == "binding" || k == "type" ||
				k == "short" || k == "definition" || k == "comment" || k == "mustSupport" || k == "requirements" || k == "alias" {
				el[k] = clone(v)
				continue
			}
			return fmt.Errorf("element %s: the generator does not merge %q", id, k)
		}
	}
	if num(el["min"]) > maxOf(el["max"]) {
		return fmt.Errorf("element %s: min %v is above max %v", id, el["min"], el["max"])
	}
	return nil
}

func num(v any) int64 {
	switch n := v.(type) {
	case json.Number:
		i, _ := n.Int64()
		return i
	case float64:
		return int64(n)
	case int:
		return int64(n)
	}
	return 0
}

func maxOf(v any) int64 {
	s, _ := v.(string)
	if s == "*" {
		return 1 << 62
	}
	var n int64
	fmt.Sscan(s, &n)
	return n
}

// splitID splits an element id at its last segment:
// Organization.contact:edt.telecom → Organization.contact:edt, telecom.
func splitID(id string) (parent, last string) {
	i := strings.LastIndex(id, ".")
	if i < 0 {
		return "", id
	}
	return id[:i], id[i+1:]
}

// PathOf is the element path of an element id: slice names removed.
func PathOf(id string) string {
	parts := strings.Split(id, ".")
	for i, p := range parts {
		if n, _, ok := strings.Cut(p, ":"); ok {
			parts[i] = n
		}
	}
	return strings.Join(parts, ".")
}

func clone(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = clone(e)
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = clone(e)
		}
		return l
	}
	return v
}

// Build generates every profile in diffDir (StructureDefinitions with a
// differential only) against the base definitions in baseDir, and returns
// each as the file it belongs in: StructureDefinition-{id}.json.
func Build(baseDir, diffDir string) (map[string][]byte, error) {
	base := Definitions{}
	if err := eachJSON(baseDir, func(name string, m map[string]any) error {
		t, _ := m["type"].(string)
		if m["resourceType"] != "StructureDefinition" || t == "" {
			return fmt.Errorf("snapshot: %s is not a StructureDefinition", name)
		}
		base[t] = m
		return nil
	}); err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	err := eachJSON(diffDir, func(name string, m map[string]any) error {
		if _, ok := m["snapshot"]; ok {
			return fmt.Errorf("snapshot: %s already has a snapshot; differentials hold only the differential", name)
		}
		sd, err := Generate(m, base)
		if err != nil {
			return err
		}
		b, err := Encode(sd)
		if err != nil {
			return err
		}
		out["StructureDefinition-"+m["id"].(string)+".json"] = b
		return nil
	})
	return out, err
}

func eachJSON(dir string, f func(name string, m map[string]any) error) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("snapshot: no JSON files in %s", dir)
	}
	sort.Strings(files)
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		v, err := Decode(b)
		if err != nil {
			return fmt.Errorf("snapshot: %s: %w", p, err)
		}
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("snapshot: %s is not a JSON object", p)
		}
		if err := f(filepath.Base(p), m); err != nil {
			return err
		}
	}
	return nil
}
