package fhir

import (
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Search limits.
const (
	DefaultCount = 50
	MaxCount     = 1000
	// MaxParams bounds how many parameters one search may carry.
	MaxParams = 64
	// MaxValueLength bounds one parameter value.
	MaxValueLength = 1024
)

// Param is one occurrence of a search parameter: name, optional modifier
// (name:modifier) or chain (name.chain), and its comma-separated values,
// which are alternatives. Separate occurrences of a name must all match.
type Param struct {
	Name     string
	Modifier string
	Chain    string
	Values   []string
	Raw      string // the name as sent, with modifier or chain
}

// Key is the parameter as written, e.g. "patient:identifier".
func (p Param) Key() string { return p.Raw }

// Include is one _include value: Source:param[:Target], or
// Source:param=Value, the form the national CP-IS API publishes
// (AuditEvent:entity-type=http://terminology.hl7.org/CodeSystem/v3-RoleClass|ASSIGNED):
// not standard FHIR, so Value is kept whole for the caller to match.
type Include struct {
	Source, Param, Target string
	Value                 string
	Raw                   string
}

// Name is the include as a server lists it: Source:param, or
// Source:param=Value.
func (i Include) Name() string {
	if i.Value != "" {
		return i.Source + ":" + i.Param + "=" + i.Value
	}
	return i.Source + ":" + i.Param
}

// SearchQuery is a parsed search request.
type SearchQuery struct {
	Params   []Param
	Count    int // DefaultCount unless _count was given
	Includes []Include
	Cursor   string // server paging cursor (_cursor)
	Summary  string
	Total    string
	Sort     string
	Format   string
	Pretty   bool
}

// resultParams are the control parameters the parser consumes itself.
var resultParams = map[string]bool{
	"_count": true, "_include": true, "_cursor": true, "_summary": true,
	"_total": true, "_sort": true, "_format": true, "_pretty": true,
}

// ParseSearch parses a URL query string (or an x-www-form-urlencoded search
// body). It checks syntax only; what each parameter means for a resource
// type is decided by the caller.
func ParseSearch(raw string) (*SearchQuery, error) {
	q := &SearchQuery{Count: DefaultCount}
	if raw == "" {
		return q, nil
	}
	pairs := strings.Split(raw, "&")
	if len(pairs) > MaxParams {
		return nil, Errorf(KindInvalidSearch, "Too many search parameters (at most %d)", MaxParams)
	}
	seen := map[string]bool{}
	for _, pair := range pairs {
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		name, err := url.QueryUnescape(k)
		if err != nil || name == "" || !validParamName(name) {
			return nil, Errorf(KindInvalidSearch, "Malformed search parameter name %q", clip(k))
		}
		value, err := url.QueryUnescape(v)
		if err != nil {
			return nil, At(KindInvalidSearch, name, "Malformed value for search parameter %q", name)
		}
		if len(value) > MaxValueLength {
			return nil, At(KindInvalidSearch, name, "The value of search parameter %q is too long", name)
		}
		if resultParams[name] {
			if name != "_include" && seen[name] {
				return nil, At(KindInvalidSearch, name, "Search parameter %q given more than once", name)
			}
			seen[name] = true
			if err := q.setResult(name, value); err != nil {
				return nil, err
			}
			continue
		}
		p := Param{Raw: name, Values: splitValues(value)}
		base, chain, _ := strings.Cut(name, ".")
		p.Chain = chain
		p.Name, p.Modifier, _ = strings.Cut(base, ":")
		if p.Name == "" {
			return nil, Errorf(KindInvalidSearch, "Malformed search parameter name %q", clip(name))
		}
		q.Params = append(q.Params, p)
	}
	return q, nil
}

func (q *SearchQuery) setResult(name, value string) error {
	switch name {
	case "_count":
		n, err := strconv.Atoi(value)
		if err != nil || n < 0 {
			return At(KindInvalidSearch, "_count", "_count must be a whole number from 0 to %d", MaxCount)
		}
		if n > MaxCount {
			n = MaxCount
		}
		q.Count = n
	case "_include":
		head, filter, hasValue := strings.Cut(value, "=")
		parts := strings.Split(head, ":")
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" || hasValue && (len(parts) != 2 || filter == "") {
			return At(KindInvalidSearch, "_include", "_include must be Type:parameter or Type:parameter:Target")
		}
		inc := Include{Source: parts[0], Param: parts[1], Value: filter, Raw: value}
		if len(parts) == 3 {
			inc.Target = parts[2]
		}
		q.Includes = append(q.Includes, inc)
	case "_cursor":
		q.Cursor = value
	case "_summary":
		q.Summary = value
	case "_total":
		q.Total = value
	case "_sort":
		q.Sort = value
	case "_format":
		q.Format = value
	case "_pretty":
		q.Pretty = value == "true"
	}
	return nil
}

func validParamName(s string) bool {
	if len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == ':' || c == '.') {
			return false
		}
	}
	return true
}

// splitValues splits on commas not escaped with a backslash.
func splitValues(v string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(v); i++ {
		switch {
		case v[i] == '\\' && i+1 < len(v) && v[i+1] == ',':
			cur.WriteByte(',')
			i++
		case v[i] == ',':
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(v[i])
		}
	}
	return append(out, cur.String())
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// Token is a parsed token search value: system|code, |code or code.
type Token struct {
	System    string
	Code      string
	HasSystem bool // a '|' was present
}

// ParseToken splits a token value at the first unescaped '|'.
func ParseToken(v string) Token {
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' {
			i++
			continue
		}
		if v[i] == '|' {
			return Token{System: unescape(v[:i]), Code: unescape(v[i+1:]), HasSystem: true}
		}
	}
	return Token{Code: unescape(v)}
}

func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// DateRange is a parsed date search value: a comparison prefix and the
// instants [Low, High) the given date covers.
type DateRange struct {
	Prefix    string
	Low, High time.Time
}

// ParseDate parses a date search value such as ge2024-01-01 or
// eq2024-01-01T10:00:00Z. Dates without a zone are read in loc.
func ParseDate(v string, loc *time.Location) (DateRange, bool) {
	d := DateRange{Prefix: "eq"}
	if len(v) >= 2 {
		switch v[:2] {
		case "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap":
			d.Prefix, v = v[:2], v[2:]
		}
	}
	low, high, ok := ParseDateTime(v, loc)
	if !ok {
		return d, false
	}
	d.Low, d.High = low, high
	return d, true
}

// ParseDateTime parses a FHIR date or dateTime (YYYY, YYYY-MM, YYYY-MM-DD or
// a full dateTime) and returns the interval [low, high) it denotes.
func ParseDateTime(v string, loc *time.Location) (low, high time.Time, ok bool) {
	layouts := []struct {
		layout string
		step   func(time.Time) time.Time
	}{
		{"2006", func(t time.Time) time.Time { return t.AddDate(1, 0, 0) }},
		{"2006-01", func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }},
		{"2006-01-02", func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }},
	}
	for _, l := range layouts {
		if len(v) == len(l.layout) {
			t, err := time.ParseInLocation(l.layout, v, loc)
			if err != nil || t.Year() < 1 { // FHIR dates start at year 0001
				return low, high, false
			}
			return t, l.step(t), true
		}
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04"} {
		t, err := time.ParseInLocation(layout, v, loc)
		if err == nil && t.Year() >= 1 {
			step := time.Second
			if layout == "2006-01-02T15:04" {
				step = time.Minute
			}
			if strings.Contains(v, ".") {
				step = time.Millisecond
			}
			return t, t.Add(step), true
		}
	}
	return low, high, false
}
