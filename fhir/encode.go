package fhir

import (
	"encoding/json"
	"slices"
	"strings"
)

// appendTree appends v, a JSON tree as encoding/json decodes it with
// UseNumber (map[string]any, []any, string, json.Number, bool, nil), as
// Marshal would write it: the same bytes, without Marshal's reflection and
// its buffer per value (a resource's stored body is written on every
// write, a thousand times in a Bundle). Any other type goes to Marshal.
func appendTree(dst []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...)
	case string:
		return AppendString(dst, x)
	case bool:
		if x {
			return append(dst, "true"...)
		}
		return append(dst, "false"...)
	case json.Number:
		if validNumber(string(x)) {
			return append(dst, x...)
		}
	case map[string]any:
		if x == nil {
			return append(dst, "null"...)
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, strings.Compare) // encoding/json's order of map keys
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendString(dst, k)
			dst = append(dst, ':')
			dst = appendTree(dst, x[k])
		}
		return append(dst, '}')
	case []any:
		if x == nil {
			return append(dst, "null"...)
		}
		dst = append(dst, '[')
		for i, el := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendTree(dst, el)
		}
		return append(dst, ']')
	}
	b, err := Marshal(v)
	if err != nil {
		// The tree came from encoding/json, so it always encodes.
		panic("fhir: encoding resource: " + err.Error())
	}
	return append(dst, b...)
}

// validNumber reports whether s is a JSON number (encoding/json's test of
// a json.Number it writes).
func validNumber(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == '-' {
		s = s[1:]
		if s == "" {
			return false
		}
	}
	switch {
	case s[0] == '0':
		s = s[1:]
	case '1' <= s[0] && s[0] <= '9':
		s = s[1:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	default:
		return false
	}
	if len(s) >= 2 && s[0] == '.' && '0' <= s[1] && s[1] <= '9' {
		s = s[2:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	if len(s) >= 2 && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		if s[0] == '+' || s[0] == '-' {
			s = s[1:]
			if s == "" {
				return false
			}
		}
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	return s == ""
}
