package fhir

import (
	"encoding/json"
	"strings"
)

// Subsetting (_summary and _elements, R4 search.html#summary and
// #elements): a rendering of a resource with some of its top-level elements
// left out, marked with the SUBSETTED tag so that nobody takes it for the
// whole resource.

// SubsettedSystem and SubsettedCode are the meta.tag that marks a subset.
const (
	SubsettedSystem = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
	SubsettedCode   = "SUBSETTED"
)

// Summary modes of _summary; SummaryCount applies to searches only.
const (
	SummaryTrue  = "true"
	SummaryText  = "text"
	SummaryData  = "data"
	SummaryCount = "count"
	SummaryFalse = "false"
)

// Subset is what a request asks to be left out: a _summary mode ("" or
// "false" for none) and the _elements asked for (none: all).
type Subset struct {
	Summary  string
	Elements []string
}

// Whole reports whether the subset leaves nothing out.
func (s Subset) Whole() bool {
	return (s.Summary == "" || s.Summary == SummaryFalse || s.Summary == SummaryCount) && len(s.Elements) == 0
}

// ParseSummary checks a _summary value: true, text, data, count or false.
func ParseSummary(v string) error {
	switch v {
	case SummaryTrue, SummaryText, SummaryData, SummaryCount, SummaryFalse:
		return nil
	}
	return At(KindInvalidSearch, "_summary", "_summary must be true, text, data, count or false")
}

// ParseElements reads the values of _elements: element names, each either
// a top-level element (status) or the type with one (Flag.status). Other
// types' elements are dropped; nested paths (period.start) are refused.
func ParseElements(typ string, values []string) ([]string, error) {
	var out []string
	for _, v := range values {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		name := v
		if t, el, ok := strings.Cut(v, "."); ok && t != "" && (t[0] >= 'A' && t[0] <= 'Z' || t == "*") {
			if t != typ && t != "*" {
				continue
			}
			name = el
		}
		if !ValidElementName(name) {
			return nil, At(KindInvalidSearch, "_elements", "_elements lists top-level element names, such as status,period; %q is not one", clip(v))
		}
		out = append(out, name)
	}
	return out, nil
}

// ValidElementName reports whether s could be a FHIR element name: a letter
// first, then letters and digits.
func ValidElementName(s string) bool {
	if s == "" || len(s) > 64 || !(s[0] >= 'a' && s[0] <= 'z' || s[0] >= 'A' && s[0] <= 'Z') {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// elementSets is, per resource type, its R4 summary (Σ) top-level elements
// and its mandatory ones (min 1): a subset keeps the mandatory elements so
// that it is still a valid R4 resource. The elements every resource keeps
// (id, meta, implicitRules, modifierExtension) are not listed.
var elementSets = map[string]struct{ summary, mandatory []string }{
	"Flag": {
		summary:   []string{"identifier", "status", "category", "code", "subject", "period", "encounter", "author"},
		mandatory: []string{"status", "code", "subject"},
	},
	"EpisodeOfCare": {
		summary:   []string{"identifier", "status", "type", "diagnosis", "patient", "managingOrganization", "period"},
		mandatory: []string{"status", "patient"},
	},
	"Organization": {
		summary: []string{"identifier", "active", "type", "name", "partOf"},
	},
	"CareTeam": {
		summary: []string{"identifier", "status", "category", "name", "subject", "encounter", "period", "managingOrganization"},
	},
	"AuditEvent": {
		summary:   []string{"type", "subtype", "action", "recorded", "outcome", "outcomeDesc", "purposeOfEvent"},
		mandatory: []string{"type", "recorded", "agent", "source"},
	},
	"StructureDefinition": {
		summary: []string{"url", "identifier", "version", "name", "title", "status", "experimental", "date", "publisher", "contact",
			"description", "useContext", "jurisdiction", "keyword", "fhirVersion", "kind", "abstract", "context", "contextInvariant", "type",
			"baseDefinition", "derivation"},
		mandatory: []string{"url", "name", "status", "kind", "abstract", "type"},
	},
	"CodeSystem": {
		summary: []string{"url", "identifier", "version", "name", "title", "status", "experimental", "date", "publisher", "contact",
			"description", "useContext", "jurisdiction", "caseSensitive", "valueSet", "hierarchyMeaning", "compositional", "versionNeeded",
			"content", "supplements", "count", "filter", "property"},
		mandatory: []string{"status", "content"},
	},
	"ValueSet": {
		summary: []string{"url", "identifier", "version", "name", "title", "status", "experimental", "date", "publisher", "contact",
			"description", "useContext", "jurisdiction", "immutable"},
		mandatory: []string{"status"},
	},
}

// alwaysKept are the elements no subset leaves out: the resource's
// identity, its meta (which carries the SUBSETTED tag), and what changes
// its meaning.
var alwaysKept = []string{"resourceType", "id", "meta", "implicitRules", "modifierExtension"}

// Apply renders body (a resource of typ) as the subset asks: with
// _summary=true its summary and mandatory elements; text: text and the
// mandatory elements; data: everything but text; with _elements the
// elements named and the mandatory ones. A resource with something left out
// gets the SUBSETTED tag in meta.tag; one with nothing left out is returned
// as it is. A body that is not a JSON object is returned as it is.
func (s Subset) Apply(typ string, body []byte) []byte {
	if s.Whole() {
		return body
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil || fields == nil {
		return body
	}
	sets := elementSets[typ]
	keep := map[string]bool{}
	for _, k := range alwaysKept {
		keep[k] = true
	}
	for _, k := range sets.mandatory {
		keep[k] = true
	}
	switch s.Summary {
	case SummaryTrue:
		for _, k := range sets.summary {
			keep[k] = true
		}
	case SummaryText:
		keep["text"] = true
	default:
		for _, k := range s.Elements {
			keep[k] = true
		}
	}
	removed := false
	for k := range fields {
		drop := !keep[k]
		if s.Summary == SummaryData {
			// everything but the narrative, or of the elements asked for
			drop = k == "text" || len(s.Elements) > 0 && !keep[k]
		}
		if drop {
			delete(fields, k)
			removed = true
		}
	}
	if !removed {
		return body
	}
	fields["meta"] = tagSubsetted(fields["meta"])
	out, err := encodeFields(fields)
	if err != nil {
		return body
	}
	return out
}

// tagSubsetted adds the SUBSETTED tag to a meta element.
func tagSubsetted(raw json.RawMessage) json.RawMessage {
	meta := map[string]any{}
	if len(raw) > 0 {
		_ = json.Unmarshal(raw, &meta)
	}
	tags, _ := meta["tag"].([]any)
	meta["tag"] = append(tags, map[string]any{"system": SubsettedSystem, "code": SubsettedCode, "display": "subsetted"})
	b, err := Marshal(meta)
	if err != nil {
		return raw
	}
	return b
}

// encodeFields writes a resource's elements with resourceType, id and meta
// first and the rest in name order.
func encodeFields(fields map[string]json.RawMessage) ([]byte, error) {
	tree := make(map[string]any, len(fields))
	for k, v := range fields {
		tree[k] = v
	}
	rt, _ := tree["resourceType"].(json.RawMessage)
	var typ string
	if err := json.Unmarshal(rt, &typ); err != nil {
		return nil, err
	}
	delete(tree, "resourceType")
	return (&Resource{Type: typ, Fields: tree}).Encode(), nil
}

// IsSubsetted reports whether a decoded resource carries the SUBSETTED tag:
// it is a subset of a resource, and writing it would lose what it leaves
// out.
func (r *Resource) IsSubsetted() bool {
	meta, _ := r.Fields["meta"].(map[string]any)
	tags, _ := meta["tag"].([]any)
	for _, t := range tags {
		tag, _ := t.(map[string]any)
		if tag["system"] == SubsettedSystem && tag["code"] == SubsettedCode {
			return true
		}
	}
	return false
}
