package profiles

import "cpis/fhir"

// Readers of a decoded resource tree (objects are map[string]any). Keys are
// matched exactly, as the validator matches them; a value of the wrong
// shape reads as absent.

func asObject(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func obj(m map[string]any, key string) map[string]any { return asObject(m[key]) }

func list(m map[string]any, key string) []any {
	l, _ := m[key].([]any)
	return l
}

func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

func identifier(m map[string]any) fhir.Identifier {
	return fhir.Identifier{Use: str(m, "use"), System: str(m, "system"), Value: str(m, "value")}
}
