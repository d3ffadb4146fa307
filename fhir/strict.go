package fhir

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// MaxJSONDepth is the deepest nesting of JSON objects and arrays a request
// body may have. FHIR resources the server accepts are far shallower; the
// bound keeps a hostile body from costing stack and time.
const MaxJSONDepth = 64

// MaxIssues is the most problems one answer lists. Beyond it the answer
// ends with one issue that counts the rest, and the collectors stop
// keeping them, so a hostile body cannot make a huge answer.
const MaxIssues = 100

// CheckJSON reads body token by token, before anything decodes it, and
// reports what would let one body be read two ways:
//
//   - a key that is not spelt as a FHIR element: FHIR element names (and
//     the _name of a primitive's extensions) start with a lower-case
//     letter, resourceType included. google/fhir also accepts the key
//     with its first letter upper-cased ("Value" for "value") and
//     encoding/json matches struct fields case-insensitively, so such a
//     key could be one element to the validator and another to the code
//     that reads the plan. With this check, the keys google/fhir then
//     accepts are exactly its element names;
//   - a key that appears twice in one object: readers differ on which
//     one counts;
//   - nesting deeper than MaxJSONDepth.
//
// Each problem is an INVALID_VALUE issue with the key's path (root is the
// prefix, e.g. the resource type; "" gives paths from the body's top).
// Syntax errors are left to the decoder that follows; CheckJSON stops at
// the first one. At most MaxIssues are kept, then a count of the rest.
func CheckJSON(body []byte, root string) []Issue {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	type frame struct {
		object bool
		path   string
		keys   map[string]struct{}
		index  int
		key    bool // an object expects a key next
	}
	var stack []*frame
	var c Collector
	// path of the value about to be read in the innermost container.
	valuePath := func(f *frame, key string) string {
		if f.object {
			return joinPath(f.path, key)
		}
		return fmt.Sprintf("%s[%d]", f.path, f.index)
	}
	var key string
	for {
		tok, err := dec.Token()
		if err != nil {
			break // io.EOF or a syntax error, which the decoder reports
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.key {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				continue
			}
			key, _ = tok.(string)
			top.key = false
			expr := clipPath(joinPath(top.path, key))
			if _, dup := top.keys[key]; dup {
				c.Add(Issue{Kind: KindInvalid, Expression: []string{expr},
					Diagnostics: fmt.Sprintf("Element %q appears more than once in the same object", clipKey(key))})
			} else if len(top.keys) < 1<<16 {
				top.keys[key] = struct{}{}
			}
			if !elementName(key) {
				c.Add(Issue{Kind: KindInvalid, Expression: []string{expr},
					Diagnostics: fmt.Sprintf("%q is not a FHIR element name: element names are case-sensitive and start with a lower-case letter", clipKey(key))})
			}
			continue
		}
		path := root
		if top != nil {
			path = valuePath(top, key)
			if top.object {
				top.key = true
			} else {
				top.index++
			}
		}
		d, ok := tok.(json.Delim)
		switch {
		case !ok:
		case d == '{' || d == '[':
			if len(stack) >= MaxJSONDepth {
				c.Add(Issue{Kind: KindInvalid, Expression: []string{clipPath(path)},
					Diagnostics: fmt.Sprintf("The body nests deeper than %d levels, more than any resource this server accepts", MaxJSONDepth)})
				return c.Issues()
			}
			f := &frame{object: d == '{', path: path, key: d == '{'}
			if f.object {
				f.keys = map[string]struct{}{}
			}
			stack = append(stack, f)
		default: // ']': '}' is read as a key position above
			stack = stack[:len(stack)-1]
		}
	}
	return c.Issues()
}

// elementName reports whether key is spelt as a FHIR JSON element name:
// an ASCII lower-case first letter, after the '_' of a primitive's
// extension.
func elementName(key string) bool {
	key = strings.TrimPrefix(key, "_")
	return key != "" && key[0] >= 'a' && key[0] <= 'z'
}

// clipKey shortens a key for a message.
func clipKey(s string) string {
	s = strings.ToValidUTF8(s, "")
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// clipPath shortens a path for an expression.
func clipPath(s string) string {
	s = strings.ToValidUTF8(s, "")
	if len(s) > 256 {
		return s[:256] + "…"
	}
	return s
}

// Collector gathers issues up to MaxIssues and counts the rest, so the
// memory and the answer stay bounded however many problems a body has.
//
// A Sorted collector keeps the issues in the order of their first
// expression, and once full keeps the first MaxIssues in that order:
// the answer is the same whatever order the problems are found in.
type Collector struct {
	Sorted bool
	issues []Issue
	more   int
}

// Add keeps is, or counts it once MaxIssues are kept. A note from an
// earlier cap (Issue.More) adds its count.
func (c *Collector) Add(is Issue) {
	if is.More > 0 {
		c.more += is.More
		return
	}
	if !c.Sorted {
		if len(c.issues) >= MaxIssues {
			c.more++
			return
		}
		c.issues = append(c.issues, is)
		return
	}
	key := firstExpr(is)
	at := sort.Search(len(c.issues), func(i int) bool { return firstExpr(c.issues[i]) > key })
	if at >= MaxIssues {
		c.more++
		return
	}
	if len(c.issues) >= MaxIssues {
		c.issues = c.issues[:MaxIssues-1]
		c.more++
	}
	c.issues = slices.Insert(c.issues, at, is)
}

// AddAll adds each issue.
func (c *Collector) AddAll(list []Issue) {
	for _, is := range list {
		c.Add(is)
	}
}

// Full reports whether the collector keeps no more issues: further work
// to find problems only adds to the count.
func (c *Collector) Full() bool { return len(c.issues) >= MaxIssues }

// Len is the number of problems seen, kept or counted.
func (c *Collector) Len() int { return len(c.issues) + c.more }

// Issues are the kept issues and, if some were not kept, a last issue that
// counts them.
func (c *Collector) Issues() []Issue {
	if c.more == 0 {
		return c.issues
	}
	return append(c.issues[:len(c.issues):len(c.issues)], moreIssue(c.more))
}

func moreIssue(n int) Issue {
	word := "problems"
	if n == 1 {
		word = "problem"
	}
	return Issue{Severity: "information", Type: "informational", More: n,
		Diagnostics: fmt.Sprintf("%d further %s not shown: correct those above and send again", n, word)}
}

// Capped is issues with at most MaxIssues problems and a last issue
// counting the rest (notes of earlier caps are summed into it).
func Capped(issues []Issue) []Issue {
	if len(issues) <= MaxIssues {
		return issues
	}
	var c Collector
	c.AddAll(issues)
	return c.Issues()
}
