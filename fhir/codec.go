package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
)

// MaxDepth is the deepest element nesting the codec accepts.
const MaxDepth = 32

// Codec decodes and validates FHIR R4 JSON with google/fhir. Build one with
// NewCodec and share it: it is safe for concurrent use.
type Codec struct {
	um *jsonformat.Unmarshaller
}

// NewCodec builds the google/fhir R4 unmarshaller once.
func NewCodec() (*Codec, error) {
	um, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		return nil, fmt.Errorf("fhir: building the R4 unmarshaller: %w", err)
	}
	um.MaxNestingDepth = MaxDepth
	return &Codec{um: um}, nil
}

// Resource is a decoded resource: its type and its elements as a JSON tree
// (objects are map[string]any, numbers json.Number), plus the bytes it came
// from.
type Resource struct {
	Type   string
	Fields map[string]any
	Body   []byte
}

// ID is the resource's logical id, or "".
func (r *Resource) ID() string {
	s, _ := r.Fields["id"].(string)
	return s
}

// SetID sets the logical id.
func (r *Resource) SetID(id string) { r.Fields["id"] = id }

// Decode parses body as one FHIR R4 resource and validates it against the base
// specification. It returns every problem it finds (up to MaxIssues, then
// their count), each with the path of the element; a nil Resource means the
// body was not a JSON object with a resourceType.
//
// A body has one reading: a key not spelt exactly as a FHIR element, a key
// twice in one object, or nesting deeper than MaxJSONDepth is refused
// (CheckJSON) before google/fhir sees it. Fields is then the one tree every
// later reader (the profile validator, the plan and the LA, the search
// keys, the stored body) works from.
func (c *Codec) Decode(body []byte) (*Resource, []Issue) {
	if issues := CheckJSON(body, ""); issues != nil {
		return nil, rootedAt(issues, body)
	}
	return c.DecodeChecked(body)
}

// DecodeChecked is Decode for a body CheckJSON has already passed as part
// of a larger one (a Bundle entry's resource, checked with its entry):
// the keys inside it were checked there, at one level deeper.
func (c *Codec) DecodeChecked(body []byte) (*Resource, []Issue) {
	fields, issues := decodeObject(body)
	if issues != nil {
		return nil, issues
	}
	rt, ok := fields["resourceType"].(string)
	if !ok || rt == "" {
		return nil, []Issue{{Kind: KindInvalid, Diagnostics: "The resource has no resourceType", Expression: []string{"resourceType"}}}
	}
	delete(fields, "resourceType")
	res := &Resource{Type: rt, Fields: fields, Body: body}
	return res, c.validate(body, rt)
}

// rootedAt prefixes the expressions of CheckJSON's issues with the body's
// resourceType, when it has a well-formed one.
func rootedAt(issues []Issue, body []byte) []Issue {
	var head map[string]json.RawMessage
	var rt string
	if json.Unmarshal(body, &head) != nil || json.Unmarshal(head["resourceType"], &rt) != nil || !ValidID(rt) {
		return issues
	}
	for i := range issues {
		for j, e := range issues[i].Expression {
			if strings.HasPrefix(e, "[") {
				issues[i].Expression[j] = rt + e
			} else {
				issues[i].Expression[j] = joinPath(rt, e)
			}
		}
	}
	return issues
}

// validate checks resource JSON against the base R4 specification and
// returns the problems found: the MaxIssues first by expression, then
// their count, whatever order google/fhir finds them in.
func (c *Codec) validate(body []byte, rt string) []Issue {
	rep := reporter{c: Collector{Sorted: true}}
	msg, err := c.um.UnmarshalWithErrorReporter(body, &rep)
	if err != nil {
		rep.c = Collector{Sorted: true}
		addUnmarshalIssues(&rep.c, err)
		return rep.c.Issues()
	}
	checkYears(msg, body, rt, &rep.c)
	return rep.c.Issues()
}

func firstExpr(is Issue) string {
	if len(is.Expression) == 0 {
		return ""
	}
	return is.Expression[0]
}

// decodeObject decodes body as a JSON object, keeping numbers exact.
func decodeObject(body []byte) (map[string]any, []Issue) {
	if m, ok := fastTree(body); ok {
		return m, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, []Issue{{Kind: KindInvalid, Diagnostics: jsonProblem(err, body)}}
	}
	if dec.More() {
		return nil, []Issue{{Kind: KindInvalid, Diagnostics: "The body holds more than one JSON value"}}
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, []Issue{{Kind: KindInvalid, Diagnostics: "The body is not a JSON object"}}
	}
	return m, nil
}

// jsonProblem describes a JSON syntax error without Go's wording.
func jsonProblem(err error, body []byte) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		line, col := position(body, se.Offset)
		return fmt.Sprintf("The body is not valid JSON: syntax error at line %d, column %d", line, col)
	case errors.As(err, &te):
		return "The body is not valid JSON"
	case len(bytes.TrimSpace(body)) == 0:
		return "The body is empty"
	default:
		return "The body is not valid JSON: it ends too early"
	}
}

func position(body []byte, off int64) (line, col int) {
	line, col = 1, 1
	for i := int64(0); i < off && i < int64(len(body)); i++ {
		if body[i] == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return line, col
}

// reporter collects google/fhir validation findings as issues.
type reporter struct{ c Collector }

func (r *reporter) ReportValidationError(path string, err error) error {
	r.c.Add(findingIssue(path, err, "error"))
	return nil
}

func (r *reporter) ReportValidationWarning(path string, err error) error {
	r.c.Add(findingIssue(path, err, "warning"))
	return nil
}

func findingIssue(path string, err error, severity string) Issue {
	if list := unmarshalIssues(err); len(list) == 1 && list[0].Kind != KindInternal {
		list[0].Kind = KindUnprocessable
		list[0].Severity = severity
		if len(list[0].Expression) == 0 && path != "" {
			list[0].Expression = []string{path}
		}
		return list[0]
	}
	return Issue{Severity: severity, Kind: KindUnprocessable, Diagnostics: "Invalid element", Expression: []string{path}}
}

// addUnmarshalIssues adds google/fhir's errors to c, one at a time.
func addUnmarshalIssues(c *Collector, err error) {
	v := reflect.ValueOf(err)
	if v.Kind() == reflect.Slice {
		for i := 0; i < v.Len(); i++ {
			c.Add(unmarshalIssue(v.Index(i)))
		}
		return
	}
	c.Add(unmarshalIssue(v))
}

// unmarshalIssues turns google/fhir's errors into issues. Its error types are
// internal to the module, so their exported fields are read by reflection.
func unmarshalIssues(err error) []Issue {
	v := reflect.ValueOf(err)
	if v.Kind() == reflect.Slice {
		var out []Issue
		for i := 0; i < v.Len(); i++ {
			out = append(out, unmarshalIssue(v.Index(i)))
		}
		return out
	}
	return []Issue{unmarshalIssue(v)}
}

func unmarshalIssue(v reflect.Value) Issue {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return Issue{Kind: KindInvalid, Diagnostics: "The resource could not be read"}
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct || !v.FieldByName("Details").IsValid() {
		return Issue{Kind: KindInvalid, Diagnostics: "The resource could not be read"}
	}
	path := v.FieldByName("Path").String()
	details := v.FieldByName("Details").String()
	diag := strings.ToValidUTF8(v.FieldByName("Diagnostics").String(), "")
	is := Issue{Kind: KindInvalid}
	switch {
	case details == "unknown field":
		name, err := strconv.Unquote(diag)
		if err != nil {
			name = diag
		}
		is.Diagnostics = fmt.Sprintf("Unknown element %q", name)
		path = joinPath(path, name)
	case details == "unknown resource type":
		is.Diagnostics = "Unknown resource type " + diag
	case strings.HasPrefix(details, "missing required field"):
		is.Diagnostics = "Missing required element " + strings.TrimPrefix(details, "missing required field ")
		if name, err := strconv.Unquote(strings.TrimPrefix(details, "missing required field ")); err == nil {
			is.Diagnostics = fmt.Sprintf("Missing required element %q", name)
			path = joinPath(path, name)
		}
	case diag != "":
		is.Diagnostics = upperFirst(details) + ": " + diag
	default:
		is.Diagnostics = upperFirst(details)
	}
	if path != "" {
		is.Expression = []string{path}
	}
	return is
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// Encode renders the resource as compact JSON with resourceType, id and meta
// first and the other elements in name order.
func (r *Resource) Encode() []byte {
	var buf bytes.Buffer
	buf.WriteString(`{"resourceType":`)
	buf.Write(AppendString(nil, r.Type))
	keys := make([]string, 0, len(r.Fields))
	for k := range r.Fields {
		if k != "id" && k != "meta" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range append([]string{"id", "meta"}, keys...) {
		v, ok := r.Fields[k]
		if !ok {
			continue
		}
		buf.WriteByte(',')
		buf.Write(AppendString(nil, k))
		buf.WriteByte(':')
		if m, ok := v.(map[string]any); ok && k == "meta" {
			writeObject(&buf, m, "versionId", "lastUpdated")
			continue
		}
		writeValue(&buf, v)
	}
	buf.WriteByte('}')
	return buf.Bytes()
}

// writeObject writes m with the first keys in the given order and the rest
// sorted by name.
func writeObject(buf *bytes.Buffer, m map[string]any, first ...string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	order := make([]string, 0, len(keys))
	for _, f := range first {
		if _, ok := m[f]; ok {
			order = append(order, f)
		}
	}
	for _, k := range keys {
		if !slices.Contains(first, k) {
			order = append(order, k)
		}
	}
	buf.WriteByte('{')
	for i, k := range order {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(AppendString(nil, k))
		buf.WriteByte(':')
		writeValue(buf, m[k])
	}
	buf.WriteByte('}')
}

func writeValue(buf *bytes.Buffer, v any) {
	buf.Write(appendTree(buf.AvailableBuffer(), v))
}

// Stamp sets the server-managed parts of meta: versionId and lastUpdated,
// and adds profile to meta.profile if it is not there. Other meta elements
// the client sent (security labels, tags) are kept.
func (r *Resource) Stamp(version int64, updated time.Time, profile string) {
	meta, _ := r.Fields["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	meta["versionId"] = strconv.FormatInt(version, 10)
	meta["lastUpdated"] = Instant(updated)
	if profile != "" {
		profiles, _ := meta["profile"].([]any)
		found := false
		for _, p := range profiles {
			if p == profile {
				found = true
			}
		}
		if !found {
			meta["profile"] = append(profiles, profile)
		}
	}
	r.Fields["meta"] = meta
}

// Instant renders t as a FHIR instant in UTC with millisecond precision.
func Instant(t time.Time) string {
	return t.UTC().Format(instantLayout)
}

// AppendInstant appends t as Instant renders it, without its quotes.
func AppendInstant(dst []byte, t time.Time) []byte {
	return t.UTC().AppendFormat(dst, instantLayout)
}

const instantLayout = "2006-01-02T15:04:05.000Z07:00"
