package fhir

import (
	"encoding/json"
)

// treeParser reads a JSON object in one pass with the lexer's scanners
// (see tokens) and builds what encoding/json builds for it: decoded into
// an any with UseNumber (objects map[string]any, arrays []any, numbers
// json.Number), or into a map[string]json.RawMessage. It reads only what
// it reads exactly as encoding/json does and gives up (ok false) on
// anything else: a syntax error, a body that is not one object, nesting
// deeper than maxTreeDepth. The callers then decode with encoding/json,
// whose answer (and error) stands. Upload entries were decoded three times
// with encoding/json on their way in; its reflection and per-token
// allocation were a tenth of an upload's CPU.
type treeParser struct {
	t     tokens
	depth int
	build bool // build the values; false only checks them
}

// maxTreeDepth is past CheckJSON's bound, which every body the parser
// reads has passed.
const maxTreeDepth = 2 * MaxJSONDepth

// fastTree is decodeObject's answer for a body the parser reads.
func fastTree(body []byte) (map[string]any, bool) {
	p := treeParser{t: tokens{b: body}, build: true}
	v, ok := p.top()
	if !ok {
		return nil, false
	}
	m, ok := v.(map[string]any)
	return m, ok
}

// Members decodes an object's members, as json.Unmarshal into a
// map[string]json.RawMessage does (each value's bytes, copied), with the
// same answer and error.
func Members(body []byte) (map[string]json.RawMessage, error) {
	p := treeParser{t: tokens{b: body}}
	if m, ok := p.members(); ok {
		return m, nil
	}
	var m map[string]json.RawMessage
	err := json.Unmarshal(body, &m)
	return m, err
}

// top reads the body's one value, an object, with nothing but white space
// around it.
func (p *treeParser) top() (any, bool) {
	p.space()
	if p.t.i >= len(p.t.b) || p.t.b[p.t.i] != '{' {
		return nil, false
	}
	v, ok := p.value()
	if !ok {
		return nil, false
	}
	p.space()
	return v, p.t.i == len(p.t.b)
}

// members reads the top object's members as raw values.
func (p *treeParser) members() (map[string]json.RawMessage, bool) {
	p.space()
	if p.t.i >= len(p.t.b) || p.t.b[p.t.i] != '{' {
		return nil, false
	}
	p.t.i++
	m := map[string]json.RawMessage{}
	ok := p.fields(func(key string) bool {
		p.space()
		start := p.t.i
		if _, ok := p.value(); !ok {
			return false
		}
		m[key] = append(json.RawMessage(nil), p.t.b[start:p.t.i]...)
		return true
	})
	if !ok {
		return nil, false
	}
	p.space()
	return m, p.t.i == len(p.t.b)
}

func (p *treeParser) space() {
	for p.t.i < len(p.t.b) && isSpace(p.t.b[p.t.i]) {
		p.t.i++
	}
}

// value reads the value at the next non-space byte.
func (p *treeParser) value() (any, bool) {
	p.space()
	if p.t.i >= len(p.t.b) {
		return nil, false
	}
	switch c := p.t.b[p.t.i]; c {
	case '{':
		return p.object()
	case '[':
		return p.array()
	case '"':
		return p.str()
	case 't':
		return true, p.t.literal("true")
	case 'f':
		return false, p.t.literal("false")
	case 'n':
		return nil, p.t.literal("null")
	default:
		start := p.t.i
		if c != '-' && (c < '0' || c > '9') || !p.t.number() {
			return nil, false
		}
		if !p.build {
			return nil, true
		}
		return json.Number(p.t.b[start:p.t.i]), true
	}
}

// str reads a string: its bytes when it has no escape and is valid UTF-8,
// else encoding/json's reading of it (escapes, invalid bytes replaced).
func (p *treeParser) str() (any, bool) {
	start := p.t.i
	plain, ok := p.t.str()
	if !ok {
		return nil, false
	}
	if !p.build {
		return nil, true
	}
	raw := p.t.b[start:p.t.i]
	if plain {
		return string(raw[1 : len(raw)-1]), true
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return nil, false
	}
	return s, true
}

// key reads a member's name and its colon.
func (p *treeParser) key() (string, bool) {
	p.space()
	if p.t.i >= len(p.t.b) || p.t.b[p.t.i] != '"' {
		return "", false
	}
	build := p.build
	p.build = true
	k, ok := p.str()
	p.build = build
	if !ok {
		return "", false
	}
	p.space()
	if p.t.i >= len(p.t.b) || p.t.b[p.t.i] != ':' {
		return "", false
	}
	p.t.i++
	return k.(string), true
}

// fields reads an object's members after its '{', through its '}',
// calling member for each (positioned after the colon).
func (p *treeParser) fields(member func(key string) bool) bool {
	p.space()
	if p.t.i < len(p.t.b) && p.t.b[p.t.i] == '}' {
		p.t.i++
		return true
	}
	for {
		k, ok := p.key()
		if !ok || !member(k) {
			return false
		}
		p.space()
		if p.t.i >= len(p.t.b) {
			return false
		}
		switch p.t.b[p.t.i] {
		case ',':
			p.t.i++
		case '}':
			p.t.i++
			return true
		default:
			return false
		}
	}
}

func (p *treeParser) object() (any, bool) {
	if p.depth++; p.depth > maxTreeDepth {
		return nil, false
	}
	defer func() { p.depth-- }()
	p.t.i++
	var m map[string]any
	if p.build {
		m = map[string]any{}
	}
	ok := p.fields(func(key string) bool {
		v, ok := p.value()
		if ok && p.build {
			m[key] = v // a key twice: the last, as encoding/json
		}
		return ok
	})
	if !ok {
		return nil, false
	}
	if !p.build {
		return nil, true
	}
	return m, true
}

func (p *treeParser) array() (any, bool) {
	if p.depth++; p.depth > maxTreeDepth {
		return nil, false
	}
	defer func() { p.depth-- }()
	p.t.i++
	var a []any
	if p.build {
		a = []any{} // an empty array is an empty slice, not nil, as encoding/json
	}
	p.space()
	if p.t.i < len(p.t.b) && p.t.b[p.t.i] == ']' {
		p.t.i++
		return a, true
	}
	for {
		v, ok := p.value()
		if !ok {
			return nil, false
		}
		if p.build {
			a = append(a, v)
		}
		p.space()
		if p.t.i >= len(p.t.b) {
			return nil, false
		}
		switch p.t.b[p.t.i] {
		case ',':
			p.t.i++
		case ']':
			p.t.i++
			if !p.build {
				return nil, true
			}
			return a, true
		default:
			return nil, false
		}
	}
}
