package quality

import (
	"strings"
	"time"
	"unicode/utf8"

	"cpis/fhir"
	"cpis/profiles"
)

// scanPlanFacts is ParsePlanFacts without encoding/json: one pass over the
// body that reads the elements the rules need and steps over the rest
// without building anything, allocating only the strings it keeps. It
// gives up (ok false) on anything it is not sure to read exactly as
// encoding/json would: an escape in a string it keeps, a key that differs
// from one it reads only in case, a key it reads given twice, null or an
// unexpected kind of value where it reads one, invalid UTF-8 in a string
// it keeps, or malformed JSON anywhere. ParsePlanFacts then reads the body
// with encoding/json. A test checks both agree (FuzzParsePlanFacts).
func scanPlanFacts(body []byte, updated time.Time, loc *time.Location) (p PlanFacts, ok bool) {
	l := lexer{b: body}
	var (
		resourceType, start, end []byte
		seen                     uint
	)
	p.Updated = updated
	// once reports whether key (bit) is seen for the first time.
	once := func(bit uint) bool {
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		return true
	}
	ok = l.object(func(key []byte) bool {
		switch string(key) {
		case "resourceType":
			var ok bool
			resourceType, ok = l.plain()
			return ok && once(1)
		case "id":
			s, ok := l.plain()
			p.ID = string(s)
			return ok && once(2)
		case "status":
			s, ok := l.plain()
			p.Status = status(s)
			return ok && once(4)
		case "identifier":
			p.Identifiers = make([]string, 0, 1)
			return once(8) && l.array(func() bool {
				var sys, val []byte
				var got uint
				return l.object(func(key []byte) bool {
					var ok bool
					switch string(key) {
					case "system":
						sys, ok = l.plain()
						got, ok = got|1, ok && got&1 == 0
					case "value":
						val, ok = l.plain()
						got, ok = got|2, ok && got&2 == 0
					case "use":
						ok = l.stringOrNull()
					default:
						ok = !folds(key, "system", "value", "use") && l.skip()
					}
					return ok
				}) && l.then(func() { p.Identifiers = append(p.Identifiers, token(sys, val)) })
			})
		case "type":
			first := true
			return once(16) && l.array(func() bool {
				var got bool
				return l.object(func(key []byte) bool {
					switch {
					case string(key) == "coding":
						if got {
							return false
						}
						got = true
						return l.array(func() bool { return l.coding(first, &p.Type) })
					case folds(key, "coding"):
						return false
					}
					return l.skip()
				}) && l.then(func() { first = false })
			})
		case "patient":
			var gotIdentifier, gotValue bool
			return once(32) && l.object(func(key []byte) bool {
				switch {
				case string(key) == "identifier":
					if gotIdentifier {
						return false
					}
					gotIdentifier = true
					return l.object(func(key []byte) bool {
						switch {
						case string(key) == "value":
							s, ok := l.plain()
							p.NHSNumber = string(s)
							ok, gotValue = ok && !gotValue, true
							return ok
						case folds(key, "value"):
							return false
						}
						return l.skip()
					})
				case folds(key, "identifier"):
					return false
				}
				return l.skip()
			})
		case "period":
			var got uint
			return once(64) && l.object(func(key []byte) bool {
				var ok bool
				switch string(key) {
				case "start":
					start, ok = l.plain()
					got, ok = got|1, ok && got&1 == 0
				case "end":
					end, ok = l.plain()
					got, ok = got|2, ok && got&2 == 0
				default:
					ok = !folds(key, "start", "end") && l.skip()
				}
				return ok
			})
		}
		return !folds(key, "resourceType", "id", "status", "identifier", "type", "patient", "period") && l.skip()
	})
	if !ok || !l.end() || string(resourceType) != "EpisodeOfCare" {
		return PlanFacts{}, false
	}
	if p.Identifiers == nil {
		p.Identifiers = []string{}
	}
	if len(start) > 0 || len(end) > 0 {
		p.Start, _, _ = fhir.ParseDateTime(string(start), loc)
		if len(end) > 0 {
			_, p.End, _ = fhir.ParseDateTime(string(end), loc)
		}
	}
	return p, true
}

// coding reads one Coding of the first type element (when first) and sets
// *pt to its plan type, if it is the first coding that has one.
func (l *lexer) coding(first bool, pt *profiles.PlanType) bool {
	var sys, code []byte
	var got uint
	ok := l.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "system":
			sys, ok = l.plain()
			got, ok = got|1, ok && got&1 == 0
		case "code":
			code, ok = l.plain()
			got, ok = got|2, ok && got&2 == 0
		case "version", "display":
			ok = l.stringOrNull()
		default:
			ok = !folds(key, "system", "code", "version", "display") && l.skip()
		}
		return ok
	})
	if ok && first && *pt == "" {
		if t, found := profiles.PlanTypeOf(fhir.Coding{System: known(sys), Code: string(code)}); found {
			*pt = t
		}
	}
	return ok
}

// known is s as a string, the constant itself for the code systems every
// plan names (no copy).
func known(s []byte) string {
	switch string(s) {
	case profiles.PlanTypeSystem:
		return profiles.PlanTypeSystem
	}
	return string(s)
}

// status is a plan status as a string, the literal for the codes R4 has.
func status(s []byte) string {
	switch string(s) {
	case "active":
		return "active"
	case "finished":
		return "finished"
	case "cancelled":
		return "cancelled"
	case "entered-in-error":
		return "entered-in-error"
	case "planned":
		return "planned"
	case "waitlist":
		return "waitlist"
	case "onhold":
		return "onhold"
	}
	return string(s)
}

func token(sys, val []byte) string {
	var b strings.Builder
	b.Grow(len(sys) + 1 + len(val))
	b.Write(sys)
	b.WriteByte('|')
	b.Write(val)
	return b.String()
}

// folds reports whether key matches one of names ignoring case but not
// exactly: encoding/json would read it as that element.
func folds(key []byte, names ...string) bool {
	for _, n := range names {
		if len(key) == len(n) && string(key) != n && strings.EqualFold(string(key), n) {
			return true
		}
	}
	return false
}

// lexer steps through JSON text. Its methods report false on anything
// malformed or unexpected.
type lexer struct {
	b []byte
	i int
}

func (l *lexer) ws() {
	for l.i < len(l.b) {
		switch l.b[l.i] {
		case ' ', '\t', '\n', '\r':
			l.i++
		default:
			return
		}
	}
}

// end reports whether only whitespace is left.
func (l *lexer) end() bool {
	l.ws()
	return l.i == len(l.b)
}

// then runs fn and reports true: for the end of a chain of &&.
func (l *lexer) then(fn func()) bool {
	fn()
	return true
}

// object reads an object, calling member with each key (unescaped keys
// only) to read its value.
func (l *lexer) object(member func(key []byte) bool) bool {
	if empty, ok := l.open('{', '}'); !ok || empty {
		return ok
	}
	for {
		key, ok := l.plain()
		if !ok {
			return false
		}
		l.ws()
		if l.i >= len(l.b) || l.b[l.i] != ':' {
			return false
		}
		l.i++
		if !member(key) {
			return false
		}
		if more, ok := l.next('}'); !ok || !more {
			return ok
		}
	}
}

// array reads an array, calling elem to read each element.
func (l *lexer) array(elem func() bool) bool {
	if empty, ok := l.open('[', ']'); !ok || empty {
		return ok
	}
	for {
		if !elem() {
			return false
		}
		if more, ok := l.next(']'); !ok || !more {
			return ok
		}
	}
}

// open reads an object's or array's opening byte: ok false if it is not
// there, empty true if the closing byte follows at once (read too).
func (l *lexer) open(opening, closing byte) (empty, ok bool) {
	l.ws()
	if l.i >= len(l.b) || l.b[l.i] != opening {
		return false, false
	}
	l.i++
	l.ws()
	if l.i < len(l.b) && l.b[l.i] == closing {
		l.i++
		return true, true
	}
	return false, true
}

// next reads what follows a member or element: a comma (more true) or the
// closing byte (more false); ok false for anything else.
func (l *lexer) next(closing byte) (more, ok bool) {
	l.ws()
	if l.i >= len(l.b) {
		return false, false
	}
	switch l.b[l.i] {
	case ',':
		l.i++
		return true, true
	case closing:
		l.i++
		return false, true
	}
	return false, false
}

// plain reads a string without escapes, valid UTF-8, and returns its
// bytes (a slice of the body).
func (l *lexer) plain() ([]byte, bool) {
	l.ws()
	if l.i >= len(l.b) || l.b[l.i] != '"' {
		return nil, false
	}
	l.i++
	from := l.i
	ascii := true
	for l.i < len(l.b) {
		c := l.b[l.i]
		switch {
		case c == '"':
			s := l.b[from:l.i]
			l.i++
			return s, ascii || utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= 0x80:
			ascii = false
		}
		l.i++
	}
	return nil, false
}

// skip steps over one value of any kind, checking it is well formed.
func (l *lexer) skip() bool {
	l.ws()
	if l.i >= len(l.b) {
		return false
	}
	switch c := l.b[l.i]; {
	case c == '{':
		return l.object(func([]byte) bool { return l.skip() })
	case c == '[':
		return l.array(l.skip)
	case c == '"':
		return l.skipString()
	case c == '-' || c >= '0' && c <= '9':
		return l.skipNumber()
	}
	for _, lit := range []string{"true", "false", "null"} {
		if l.literal(lit) {
			return true
		}
	}
	return false
}

// literal steps over lit if it is next.
func (l *lexer) literal(lit string) bool {
	if len(l.b)-l.i >= len(lit) && string(l.b[l.i:l.i+len(lit)]) == lit {
		l.i += len(lit)
		return true
	}
	return false
}

// stringOrNull steps over a string or null: an element encoding/json
// decodes into a string field without the rules reading it.
func (l *lexer) stringOrNull() bool {
	l.ws()
	if l.i < len(l.b) && l.b[l.i] == '"' {
		return l.skipString()
	}
	return l.literal("null")
}

// skipString steps over a string, escapes included, checking them.
func (l *lexer) skipString() bool {
	l.i++ // the opening quote
	for l.i < len(l.b) {
		c := l.b[l.i]
		switch {
		case c == '"':
			l.i++
			return true
		case c < 0x20:
			return false
		case c == '\\':
			if l.i+1 >= len(l.b) {
				return false
			}
			switch l.b[l.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				l.i += 2
			case 'u':
				if l.i+6 > len(l.b) {
					return false
				}
				for _, h := range l.b[l.i+2 : l.i+6] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return false
					}
				}
				l.i += 6
			default:
				return false
			}
		default:
			l.i++
		}
	}
	return false
}

// skipNumber steps over a number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (l *lexer) skipNumber() bool {
	digits := func() int {
		n := 0
		for l.i < len(l.b) && l.b[l.i] >= '0' && l.b[l.i] <= '9' {
			l.i++
			n++
		}
		return n
	}
	if l.b[l.i] == '-' {
		l.i++
	}
	if l.i < len(l.b) && l.b[l.i] == '0' {
		l.i++
	} else if digits() == 0 {
		return false
	}
	if l.i < len(l.b) && l.b[l.i] == '.' {
		l.i++
		if digits() == 0 {
			return false
		}
	}
	if l.i < len(l.b) && (l.b[l.i] == 'e' || l.b[l.i] == 'E') {
		l.i++
		if l.i < len(l.b) && (l.b[l.i] == '+' || l.b[l.i] == '-') {
			l.i++
		}
		if digits() == 0 {
			return false
		}
	}
	return true
}
