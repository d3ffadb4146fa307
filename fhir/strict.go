package fhir

import (
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
	// The tokens are json.Decoder.Token's, read without its cost (see
	// tokens). Paths are made only for a problem: most bodies have none,
	// and making every value's path was most of this check's work.
	toks := tokens{b: body}
	var stack []*jsonFrame
	var c Collector
	var key string
	for {
		kind, d, name, err := toks.next()
		if err != nil {
			break // the end, or a syntax error, which the decoder reports
		}
		var top *jsonFrame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.expectKey {
			if kind == tokDelim && d == '}' {
				stack = stack[:len(stack)-1]
				continue
			}
			key = ""
			if kind == tokKey {
				key = name
			}
			top.expectKey = false
			if top.seen(key) {
				c.Add(Issue{Kind: KindInvalid, Expression: []string{clipPath(joinPath(top.pathOf(root, stack), key))},
					Diagnostics: fmt.Sprintf("Element %q appears more than once in the same object", clipKey(key))})
			}
			if !elementName(key) {
				c.Add(Issue{Kind: KindInvalid, Expression: []string{clipPath(joinPath(top.pathOf(root, stack), key))},
					Diagnostics: fmt.Sprintf("%q is not a FHIR element name: element names are case-sensitive and start with a lower-case letter", clipKey(key))})
			}
			continue
		}
		// The value about to be read: under key in an object, or the
		// next element of an array.
		index := 0
		if top != nil {
			if top.object {
				top.expectKey = true
			} else {
				index = top.next
				top.next++
			}
		}
		switch {
		case kind != tokDelim:
		case d == '{' || d == '[':
			f := &jsonFrame{depth: len(stack), key: key, index: index}
			if len(stack) >= MaxJSONDepth {
				c.Add(Issue{Kind: KindInvalid, Expression: []string{clipPath(f.pathOf(root, stack))},
					Diagnostics: fmt.Sprintf("The body nests deeper than %d levels, more than any resource this server accepts", MaxJSONDepth)})
				return c.Issues()
			}
			f.object, f.expectKey = d == '{', d == '{'
			stack = append(stack, f)
		default: // ']': '}' is read as a key position above
			stack = stack[:len(stack)-1]
		}
	}
	return c.Issues()
}

// jsonFrame is an object or array CheckJSON is in, and where it sits.
type jsonFrame struct {
	object    bool
	expectKey bool   // an object expects a key next
	depth     int    // its place in the stack: 0 is the body's top value
	key       string // the key it sits under, in an object
	index     int    // its index, in an array
	next      int    // an array's next element
	keys      []string
	keySet    map[string]struct{} // past smallKeys keys
	path      string
	hasPath   bool
}

// smallKeys is how many keys of an object are kept in a slice (searched in
// order, no allocation for a map) before they move to a set.
const smallKeys = 16

// seen records key in the object and reports whether it was there already.
// At most 1<<16 keys are kept.
func (f *jsonFrame) seen(key string) bool {
	if f.keySet != nil {
		if _, dup := f.keySet[key]; dup {
			return true
		}
		if len(f.keySet) < 1<<16 {
			f.keySet[key] = struct{}{}
		}
		return false
	}
	if slices.Contains(f.keys, key) {
		return true
	}
	if len(f.keys) < smallKeys {
		f.keys = append(f.keys, key)
		return false
	}
	f.keySet = make(map[string]struct{}, 2*smallKeys)
	for _, k := range f.keys {
		f.keySet[k] = struct{}{}
	}
	f.keys = nil
	f.keySet[key] = struct{}{}
	return false
}

// pathOf is the path of the value f stands for, its parents being
// stack[:f.depth] (root is the top value's path).
func (f *jsonFrame) pathOf(root string, stack []*jsonFrame) string {
	if f.hasPath {
		return f.path
	}
	p := root
	if f.depth > 0 {
		parent := stack[f.depth-1]
		if parent.object {
			p = joinPath(parent.pathOf(root, stack), f.key)
		} else {
			p = fmt.Sprintf("%s[%d]", parent.pathOf(root, stack), f.index)
		}
	}
	f.path, f.hasPath = p, true
	return p
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
