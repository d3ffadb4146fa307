package snapshot

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"
)

// keyOrder is the order FHIR lists the elements of the resources and types
// a StructureDefinition holds; Encode writes keys in this order so the
// generated files read like the specification's. Keys not listed follow,
// sorted by name.
var keyOrder = strings.Fields(`resourceType id meta implicitRules language text contained extension modifierExtension
	url identifier version name title status experimental date publisher contact description useContext jurisdiction
	purpose copyright keyword fhirVersion mapping kind abstract context contextInvariant type baseDefinition derivation
	path representation sliceName sliceIsConstraining label code slicing discriminator ordered rules short definition comment
	requirements alias min max base contentReference profile targetProfile aggregation versioning
	defaultValue meaningWhenMissing orderMeaning fixed pattern example minValue maxValue maxLength condition constraint key
	severity human expression xpath source mustSupport isModifier isModifierReason isSummary binding strength valueSet
	identity map uri system display element snapshot differential valueString valueBoolean valueCode valueUri valueMarkdown
	valueInteger valueCanonical`)

var rank = func() map[string]int {
	m := make(map[string]int, len(keyOrder))
	for i, k := range keyOrder {
		if _, ok := m[k]; !ok {
			m[k] = i
		}
	}
	return m
}()

func keyRank(k string) int {
	if r, ok := rank[k]; ok {
		return r
	}
	for _, p := range []string{"fixed", "pattern", "defaultValue", "minValue", "maxValue"} {
		if strings.HasPrefix(k, p) && len(k) > len(p) {
			return rank[p]
		}
	}
	return len(keyOrder)
}

// Encode writes v as indented JSON with FHIR's key order, ending in a
// newline.
func Encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	if err := write(&buf, v, ""); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

func write(buf *bytes.Buffer, v any, indent string) error {
	in := indent + "  "
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			ri, rj := keyRank(keys[i]), keyRank(keys[j])
			if ri != rj {
				return ri < rj
			}
			return keys[i] < keys[j]
		})
		if len(keys) == 0 {
			buf.WriteString("{}")
			return nil
		}
		buf.WriteString("{\n")
		for i, k := range keys {
			kb, _ := json.Marshal(k)
			buf.WriteString(in)
			buf.Write(kb)
			buf.WriteString(": ")
			if err := write(buf, x[k], in); err != nil {
				return err
			}
			if i < len(keys)-1 {
				buf.WriteByte(',')
			}
			buf.WriteByte('\n')
		}
		buf.WriteString(indent + "}")
	case []any:
		if len(x) == 0 {
			buf.WriteString("[]")
			return nil
		}
		buf.WriteString("[\n")
		for i, e := range x {
			buf.WriteString(in)
			if err := write(buf, e, in); err != nil {
				return err
			}
			if i < len(x)-1 {
				buf.WriteByte(',')
			}
			buf.WriteByte('\n')
		}
		buf.WriteString(indent + "]")
	default:
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(x); err != nil {
			return err
		}
		buf.Write(bytes.TrimRight(b.Bytes(), "\n"))
	}
	return nil
}

// Decode reads JSON keeping numbers exact.
func Decode(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}
