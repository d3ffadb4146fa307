package profiles

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"cpis/fhir"
)

// profile is a StructureDefinition's snapshot as a tree the validator walks.
type profile struct {
	url, typ, name string
	root           *element
}

// element is one ElementDefinition of a snapshot: what the validator
// applies to the values at its path.
type element struct {
	id, path string
	name     string // the last path segment: identifier, value[x]
	min      int
	max      int  // -1: unbounded
	array    bool // the base element repeats, so the JSON holds an array
	types    []string
	fixed    any
	pattern  any
	binding  string // a required binding's value set
	slicing  []discriminator
	rules    []string // the CP-IS constraint keys (cpis-*) on the element
	children []*element
	slices   []*element
}

type discriminator struct{ typ, path string }

func (e *element) walk(f func(*element)) {
	f(e)
	for _, c := range e.children {
		c.walk(f)
	}
	for _, s := range e.slices {
		s.walk(f)
	}
}

func (e *element) choice() bool { return strings.HasSuffix(e.name, "[x]") }

// parseProfile builds the element tree of a StructureDefinition snapshot.
func parseProfile(raw []byte) (*profile, error) {
	var sd struct {
		URL      string `json:"url"`
		Name     string `json:"name"`
		Type     string `json:"type"`
		Snapshot struct {
			Element []map[string]json.RawMessage `json:"element"`
		} `json:"snapshot"`
	}
	if err := decodeJSON(raw, &sd); err != nil {
		return nil, err
	}
	if len(sd.Snapshot.Element) == 0 {
		return nil, fmt.Errorf("%s has no snapshot", sd.URL)
	}
	p := &profile{url: sd.URL, typ: sd.Type, name: sd.Name}
	byID := map[string]*element{}
	for i, raw := range sd.Snapshot.Element {
		e, err := parseElement(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: element %d: %w", sd.URL, i, err)
		}
		byID[e.id] = e
		if i == 0 {
			p.root = e
			continue
		}
		parentID, last := e.id[:strings.LastIndex(e.id, ".")], e.id[strings.LastIndex(e.id, ".")+1:]
		if name, _, ok := strings.Cut(last, ":"); ok {
			sliced := byID[parentID+"."+name]
			if sliced == nil || sliced.slicing == nil {
				return nil, fmt.Errorf("%s: slice %s has no sliced element", sd.URL, e.id)
			}
			sliced.slices = append(sliced.slices, e)
			continue
		}
		parent := byID[parentID]
		if parent == nil {
			return nil, fmt.Errorf("%s: %s has no parent", sd.URL, e.id)
		}
		parent.children = append(parent.children, e)
	}
	return p, nil
}

func parseElement(raw map[string]json.RawMessage) (*element, error) {
	var e struct {
		ID   string `json:"id"`
		Path string `json:"path"`
		Min  int    `json:"min"`
		Max  string `json:"max"`
		Base struct {
			Max string `json:"max"`
		} `json:"base"`
		Type []struct {
			Code string `json:"code"`
		} `json:"type"`
		Slicing *struct {
			Discriminator []struct {
				Type string `json:"type"`
				Path string `json:"path"`
			} `json:"discriminator"`
		} `json:"slicing"`
		Constraint []struct {
			Key string `json:"key"`
		} `json:"constraint"`
		Binding *struct {
			Strength string `json:"strength"`
			ValueSet string `json:"valueSet"`
		} `json:"binding"`
	}
	b, _ := json.Marshal(raw)
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, err
	}
	el := &element{id: e.ID, path: e.Path, name: e.Path[strings.LastIndex(e.Path, ".")+1:], min: e.Min, max: -1,
		array: e.Base.Max != "1" && e.Base.Max != "0"}
	if e.Max != "*" {
		n, err := strconv.Atoi(e.Max)
		if err != nil {
			return nil, fmt.Errorf("%s: max %q", e.ID, e.Max)
		}
		el.max = n
	}
	for _, t := range e.Type {
		el.types = append(el.types, t.Code)
	}
	if e.Slicing != nil {
		el.slicing = []discriminator{}
		for _, d := range e.Slicing.Discriminator {
			el.slicing = append(el.slicing, discriminator{d.Type, d.Path})
		}
	}
	for _, c := range e.Constraint {
		if strings.HasPrefix(c.Key, "cpis-") {
			el.rules = append(el.rules, c.Key)
		}
	}
	if e.Binding != nil && e.Binding.Strength == "required" && strings.HasPrefix(e.Binding.ValueSet, Base+"/") {
		el.binding = e.Binding.ValueSet
	}
	for k, v := range raw {
		var dst *any
		switch {
		case strings.HasPrefix(k, "fixed"):
			dst = &el.fixed
		case strings.HasPrefix(k, "pattern"):
			dst = &el.pattern
		default:
			continue
		}
		if err := decodeJSON(v, dst); err != nil {
			return nil, err
		}
	}
	return el, nil
}

func decodeJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(v)
}

// codeSystem is one of the project's CodeSystems: its codes.
type codeSystem struct {
	url   string
	codes []string
}

func parseCodeSystem(raw []byte) (*codeSystem, error) {
	var cs struct {
		URL     string `json:"url"`
		Concept []struct {
			Code string `json:"code"`
		} `json:"concept"`
	}
	if err := json.Unmarshal(raw, &cs); err != nil {
		return nil, err
	}
	out := &codeSystem{url: cs.URL}
	for _, c := range cs.Concept {
		out.codes = append(out.codes, c.Code)
	}
	return out, nil
}

func (cs *codeSystem) has(code string) bool {
	for _, c := range cs.codes {
		if c == code {
			return true
		}
	}
	return false
}

// valueSet is a value set expanded: system|code pairs.
type valueSet struct {
	url   string
	codes map[string]bool // system|code
	list  []string        // codes, for messages
}

func (c *Catalog) parseValueSet(raw []byte) (*valueSet, error) {
	var vs struct {
		URL     string `json:"url"`
		Compose struct {
			Include []struct {
				System  string `json:"system"`
				Concept []struct {
					Code string `json:"code"`
				} `json:"concept"`
			} `json:"include"`
		} `json:"compose"`
	}
	if err := json.Unmarshal(raw, &vs); err != nil {
		return nil, err
	}
	out := &valueSet{url: vs.URL, codes: map[string]bool{}}
	for _, inc := range vs.Compose.Include {
		codes := make([]string, 0, len(inc.Concept))
		for _, cc := range inc.Concept {
			codes = append(codes, cc.Code)
		}
		if len(codes) == 0 {
			cs := c.codes[inc.System]
			if cs == nil {
				return nil, fmt.Errorf("profiles: %s includes all of %s, which the server does not hold", vs.URL, inc.System)
			}
			codes = cs.codes
		}
		for _, code := range codes {
			out.codes[inc.System+"|"+code] = true
			out.list = append(out.list, code)
		}
	}
	return out, nil
}

// Validate checks a decoded resource against its type's CP-IS profile and
// any profile it claims in meta.profile or the caller names, and returns
// every problem with its FHIRPath-like expression, in the order of the
// profile's elements. A claimed or named profile the server does not know
// is an error: a resource never passes a profile nobody checked.
//
// The base specification (types, codes of required base bindings,
// unknown elements) is the codec's job; this applies what the CP-IS
// profiles add: cardinality, fixed and pattern values, required bindings
// to the CP-IS value sets, slices, and the rules named by cpis-*
// constraints.
func (c *Catalog) Validate(res *fhir.Resource, named ...string) []fhir.Issue {
	v := &validation{c: c}
	t := res.Type
	own := c.byType[t]
	var claimed []string
	if meta, ok := res.Fields["meta"].(map[string]any); ok {
		list, _ := meta["profile"].([]any)
		for _, p := range list {
			s, _ := p.(string)
			claimed = append(claimed, s)
		}
	}
	for i, p := range claimed {
		v.knownProfile(t, p, fmt.Sprintf("%s.meta.profile[%d]", t, i), own)
	}
	for _, p := range named {
		v.knownProfile(t, p, "", own)
	}
	if own != nil {
		v.object(res.Fields, own.root, t)
	}
	return v.issues.Issues()
}

// knownProfile reports a profile the resource cannot be checked against.
// The base definition of the type is known: every resource conforms to it
// once the codec accepts it.
func (v *validation) knownProfile(t, url, expr string, own *profile) {
	canonical, _, _ := strings.Cut(url, "|")
	switch p := v.c.profiles[canonical]; {
	case canonical == "http://hl7.org/fhir/StructureDefinition/"+t:
	case p != nil && p.typ == t:
	case p != nil:
		v.add(expr, "Profile %q is for %s, not %s", url, p.typ, t)
	case own != nil:
		v.add(expr, "Unknown profile %q: this server validates %s against %s", url, t, own.url)
	default:
		v.add(expr, "Unknown profile %q: this server has no profile for %s", url, t)
	}
}

type validation struct {
	c      *Catalog
	issues fhir.Collector // at most fhir.MaxIssues kept, the rest counted
}

func (v *validation) add(expr, format string, args ...any) {
	is := fhir.Issue{Kind: fhir.KindUnprocessable, Diagnostics: fmt.Sprintf(format, args...)}
	if expr != "" {
		is.Expression = []string{expr}
	}
	v.issues.Add(is)
}

// item is one value of an element in the resource JSON, with its
// expression.
type item struct {
	value any
	expr  string
}

// values finds the element's values in obj: a choice element value[x]
// matches valueReference, valueString, ...
func (e *element) values(obj map[string]any, expr string) []item {
	var out []item
	add := func(key string, v any) {
		if l, ok := v.([]any); ok {
			for i, x := range l {
				out = append(out, item{x, fmt.Sprintf("%s.%s[%d]", expr, key, i)})
			}
			return
		}
		out = append(out, item{v, expr + "." + key})
	}
	if !e.choice() {
		if v, ok := obj[e.name]; ok {
			add(e.name, v)
		} else if _, ok := obj["_"+e.name]; ok {
			add(e.name, nil) // a primitive with only an extension
		}
		return out
	}
	stem := strings.TrimSuffix(e.name, "[x]")
	keys := make([]string, 0, 1)
	for k := range obj {
		if len(k) > len(stem) && strings.HasPrefix(k, stem) && k[len(stem)] >= 'A' && k[len(stem)] <= 'Z' {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		add(k, obj[k])
	}
	return out
}

// object checks the children of el in obj.
func (v *validation) object(obj map[string]any, el *element, expr string) {
	for _, c := range el.children {
		items := c.values(obj, expr)
		where := expr + "." + strings.TrimSuffix(c.name, "[x]")
		if len(c.slices) > 0 {
			v.sliced(c, items, where)
			continue
		}
		v.count(c, len(items), where, "")
		for _, it := range items {
			v.value(it, c)
		}
	}
}

// count checks an element's cardinality.
func (v *validation) count(e *element, n int, where, slice string) {
	what := e.path
	if slice != "" {
		what = fmt.Sprintf("%s matching slice %s", e.path, slice)
	}
	switch {
	case n < e.min && n == 0 && slice == "":
		v.add(where, "%s is required by the CP-IS profile", what)
	case n < e.min:
		v.add(where, "The CP-IS profile requires at least %d of %s; found %d", e.min, what, n)
	case e.max == 0 && n > 0:
		v.add(where, "%s is not allowed by the CP-IS profile", what)
	case e.max >= 0 && n > e.max:
		v.add(where, "The CP-IS profile allows at most %d of %s; found %d", e.max, what, n)
	}
}

// sliced assigns each value of a sliced element to the first slice it
// matches, checks each slice's cardinality (and the element's, if no slice
// was found wanting), and checks each value against its slice (or the
// element, if it matches none: the slicing is open).
func (v *validation) sliced(e *element, items []item, where string) {
	counts := make([]int, len(e.slices))
	bySlice := make([]*element, len(items))
	for i, it := range items {
		for j, s := range e.slices {
			if s.matches(it.value, e.slicing) {
				bySlice[i] = s
				counts[j]++
				break
			}
		}
	}
	before := v.issues.Len()
	for j, s := range e.slices {
		v.count(s, counts[j], where, s.id[strings.LastIndex(s.id, ":")+1:])
	}
	if v.issues.Len() == before {
		// A missing slice says more than the element's own count.
		v.count(e, len(items), where, "")
	}
	for i, it := range items {
		if s := bySlice[i]; s != nil {
			v.value(it, s)
		} else {
			v.value(it, e)
		}
	}
}

// matches reports whether a value belongs to the slice: at each
// discriminator path it has the slice's fixed value or pattern.
func (s *element) matches(val any, ds []discriminator) bool {
	if len(ds) == 0 {
		return false
	}
	for _, d := range ds {
		el := s
		got := val
		for _, seg := range strings.Split(d.path, ".") {
			if seg == "$this" {
				continue
			}
			var next *element
			for _, c := range el.children {
				if c.name == seg {
					next = c
				}
			}
			obj, _ := got.(map[string]any)
			if next == nil || obj == nil {
				return false
			}
			el, got = next, obj[seg]
		}
		switch {
		case el.fixed != nil && d.typ == "value":
			if !equalJSON(got, el.fixed) {
				return false
			}
		case el.pattern != nil || el.fixed != nil:
			want := el.pattern
			if want == nil {
				want = el.fixed
			}
			if !containsJSON(got, want) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// value checks one value of an element: choice type, fixed value,
// pattern, required binding, the element's rules, then its children.
func (v *validation) value(it item, e *element) {
	if it.value == nil {
		return
	}
	if e.choice() {
		typ := it.expr[strings.LastIndex(it.expr, ".")+1+len(strings.TrimSuffix(e.name, "[x]")):]
		if i := strings.Index(typ, "["); i >= 0 {
			typ = typ[:i]
		}
		ok := false
		for _, t := range e.types {
			if strings.EqualFold(t, typ) {
				ok = true
			}
		}
		if !ok {
			v.add(it.expr, "%s must be of type %s in the CP-IS profile", e.path, strings.Join(e.types, " or "))
			return
		}
	}
	if e.fixed != nil && !equalJSON(it.value, e.fixed) {
		v.add(it.expr, "%s must be %s", e.path, renderJSON(e.fixed))
	}
	if e.pattern != nil && !containsJSON(it.value, e.pattern) {
		v.add(it.expr, "%s must match %s", e.path, renderJSON(e.pattern))
	}
	if e.binding != "" {
		v.bound(it, v.c.valueSets[e.binding], e)
	}
	for _, k := range e.rules {
		rules[k](v, it)
	}
	if obj, ok := it.value.(map[string]any); ok && len(e.children) > 0 {
		v.object(obj, e, it.expr)
	}
}

// bound checks a required binding to one of the CP-IS value sets: a code,
// a Coding, or a CodeableConcept with at least one coding in the set. A
// code from a CP-IS code system that the code system does not define is
// reported at the code itself.
func (v *validation) bound(it item, vs *valueSet, e *element) {
	expected := strings.Join(vs.list, ", ")
	switch x := it.value.(type) {
	case string:
		for k := range vs.codes {
			if strings.HasSuffix(k, "|"+x) {
				return
			}
		}
		v.add(it.expr, "%q is not in the value set %s (%s)", x, vs.url, expected)
	case map[string]any:
		var codings []item
		if _, isConcept := x["coding"]; isConcept || !hasAny(x, "system", "code") {
			list, _ := x["coding"].([]any)
			for i, c := range list {
				codings = append(codings, item{c, fmt.Sprintf("%s.coding[%d]", it.expr, i)})
			}
		} else {
			codings = []item{it}
		}
		unknown := false
		for _, cd := range codings {
			m, _ := cd.value.(map[string]any)
			sys, _ := m["system"].(string)
			code, _ := m["code"].(string)
			if vs.codes[sys+"|"+code] {
				return
			}
			if cs := v.c.codes[sys]; cs != nil && !cs.has(code) {
				v.add(cd.expr+".code", "Unknown code %q in %s: the codes are %s", code, sys, strings.Join(cs.codes, ", "))
				unknown = true
			}
		}
		if !unknown {
			v.add(it.expr, "%s needs a code from the value set %s (%s)", e.path, vs.url, expected)
		}
	}
}

func hasAny(m map[string]any, keys ...string) bool {
	for _, k := range keys {
		if _, ok := m[k]; ok {
			return true
		}
	}
	return false
}

// equalJSON compares decoded JSON values (numbers as json.Number).
func equalJSON(a, b any) bool {
	ab, err1 := json.Marshal(a)
	bb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ab, bb)
}

// containsJSON is FHIR pattern matching: every element of the pattern is
// in the value; each item of a pattern array matches some item of the
// value's array.
func containsJSON(val, pattern any) bool {
	switch p := pattern.(type) {
	case map[string]any:
		m, ok := val.(map[string]any)
		if !ok {
			return false
		}
		for k, pv := range p {
			if !containsJSON(m[k], pv) {
				return false
			}
		}
		return true
	case []any:
		l, ok := val.([]any)
		if !ok {
			return false
		}
		for _, pv := range p {
			found := false
			for _, x := range l {
				if containsJSON(x, pv) {
					found = true
					break
				}
			}
			if !found {
				return false
			}
		}
		return true
	}
	return equalJSON(val, pattern)
}

func renderJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
