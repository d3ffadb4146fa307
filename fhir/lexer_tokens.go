package fhir

import (
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// tokens reads a body's JSON tokens as json.Decoder.Token does (with the
// same grammar, the same token states and the same point of failure), but
// without its allocation per token and interface boxing: CheckJSON reads
// every token of every resource written, and through the Decoder that was
// most of its cost. Only what CheckJSON looks at is produced: delimiters,
// and keys as decoded strings; other values are scalar.
type tokens struct {
	b     []byte
	i     int
	state byte   // the state of json.Decoder's tokenState
	stack []byte // the enclosing states
}

// The token states, as encoding/json names them.
const (
	tokenTopValue = iota
	tokenArrayStart
	tokenArrayValue
	tokenArrayComma
	tokenObjectStart
	tokenObjectKey
	tokenObjectColon
	tokenObjectValue
	tokenObjectComma
)

// tokenKind is what next read.
type tokenKind byte

const (
	tokDelim  tokenKind = iota // delim holds it: { } [ ]
	tokKey                     // key holds the decoded key
	tokScalar                  // a string, number, true, false or null value
)

var errToken = errors.New("fhir: JSON syntax error")

// next reads the next token. Its error is io.EOF-like at the end of the
// body and a syntax error otherwise; CheckJSON stops at either.
func (t *tokens) next() (kind tokenKind, delim byte, key string, err error) {
	for {
		for t.i < len(t.b) && isSpace(t.b[t.i]) {
			t.i++
		}
		if t.i >= len(t.b) {
			return 0, 0, "", errToken
		}
		c := t.b[t.i]
		switch c {
		case '[', '{':
			if !t.valueAllowed() {
				return 0, 0, "", errToken
			}
			t.i++
			t.stack = append(t.stack, t.state)
			if c == '[' {
				t.state = tokenArrayStart
			} else {
				t.state = tokenObjectStart
			}
			return tokDelim, c, "", nil
		case ']', '}':
			if c == ']' && t.state != tokenArrayStart && t.state != tokenArrayComma ||
				c == '}' && t.state != tokenObjectStart && t.state != tokenObjectComma {
				return 0, 0, "", errToken
			}
			t.i++
			t.state = t.stack[len(t.stack)-1]
			t.stack = t.stack[:len(t.stack)-1]
			t.valueEnd()
			return tokDelim, c, "", nil
		case ':':
			if t.state != tokenObjectColon {
				return 0, 0, "", errToken
			}
			t.i++
			t.state = tokenObjectValue
			continue
		case ',':
			switch t.state {
			case tokenArrayComma:
				t.state = tokenArrayValue
			case tokenObjectComma:
				t.state = tokenObjectKey
			default:
				return 0, 0, "", errToken
			}
			t.i++
			continue
		case '"':
			if t.state == tokenObjectStart || t.state == tokenObjectKey {
				start := t.i
				plain, ok := t.str()
				if !ok {
					return 0, 0, "", errToken
				}
				raw := t.b[start:t.i]
				if plain {
					key = string(raw[1 : len(raw)-1])
				} else if json.Unmarshal(raw, &key) != nil {
					return 0, 0, "", errToken
				}
				t.state = tokenObjectColon
				return tokKey, 0, key, nil
			}
		}
		if !t.valueAllowed() {
			return 0, 0, "", errToken
		}
		if !t.scalar() {
			return 0, 0, "", errToken
		}
		t.valueEnd()
		return tokScalar, 0, "", nil
	}
}

func (t *tokens) valueAllowed() bool {
	switch t.state {
	case tokenTopValue, tokenArrayStart, tokenArrayValue, tokenObjectValue:
		return true
	}
	return false
}

func (t *tokens) valueEnd() {
	switch t.state {
	case tokenArrayStart, tokenArrayValue:
		t.state = tokenArrayComma
	case tokenObjectValue:
		t.state = tokenObjectComma
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// scalar reads a string, number or literal at t.i.
func (t *tokens) scalar() bool {
	switch c := t.b[t.i]; {
	case c == '"':
		_, ok := t.str()
		return ok
	case c == '-' || '0' <= c && c <= '9':
		return t.number()
	case c == 't':
		return t.literal("true")
	case c == 'f':
		return t.literal("false")
	case c == 'n':
		return t.literal("null")
	}
	return false
}

func (t *tokens) literal(word string) bool {
	if len(t.b)-t.i < len(word) || string(t.b[t.i:t.i+len(word)]) != word {
		return false
	}
	t.i += len(word)
	return true
}

// str reads a string at t.i (its opening quote); plain reports that it has
// no escape and is valid UTF-8, so its bytes are its value.
func (t *tokens) str() (plain, ok bool) {
	t.i++
	start := t.i
	plain = true
	for t.i < len(t.b) {
		c := t.b[t.i]
		switch {
		case c == '"':
			if plain && !utf8.Valid(t.b[start:t.i]) {
				plain = false
			}
			t.i++
			return plain, true
		case c < 0x20:
			return false, false
		case c == '\\':
			plain = false
			t.i++
			if t.i >= len(t.b) {
				return false, false
			}
			switch t.b[t.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				t.i++
			case 'u':
				t.i++
				for k := 0; k < 4; k++ {
					if t.i >= len(t.b) || !isHex(t.b[t.i]) {
						return false, false
					}
					t.i++
				}
			default:
				return false, false
			}
		default:
			t.i++
		}
	}
	return false, false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func (t *tokens) digits() int {
	n := 0
	for t.i < len(t.b) && '0' <= t.b[t.i] && t.b[t.i] <= '9' {
		t.i++
		n++
	}
	return n
}

// number reads a JSON number at t.i: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (t *tokens) number() bool {
	if t.b[t.i] == '-' {
		t.i++
	}
	switch {
	case t.i >= len(t.b):
		return false
	case t.b[t.i] == '0':
		t.i++
	case '1' <= t.b[t.i] && t.b[t.i] <= '9':
		t.digits()
	default:
		return false
	}
	if t.i < len(t.b) && t.b[t.i] == '.' {
		t.i++
		if t.digits() == 0 {
			return false
		}
	}
	if t.i < len(t.b) && (t.b[t.i] == 'e' || t.b[t.i] == 'E') {
		t.i++
		if t.i < len(t.b) && (t.b[t.i] == '+' || t.b[t.i] == '-') {
			t.i++
		}
		if t.digits() == 0 {
			return false
		}
	}
	return true
}
