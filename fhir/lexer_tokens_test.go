package fhir

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// checkJSONByDecoder is CheckJSON as it was, reading json.Decoder's
// tokens: the oracle the token reader must agree with.
func checkJSONByDecoder(body []byte, root string) []Issue {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	// Paths are made only for a problem: most bodies have none, and
	// making every value's path was most of this check's work.
	var stack []*jsonFrame
	var c Collector
	var key string
	for {
		tok, err := dec.Token()
		if err != nil {
			break // io.EOF or a syntax error, which the decoder reports
		}
		var top *jsonFrame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.expectKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				continue
			}
			key, _ = tok.(string)
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
		d, ok := tok.(json.Delim)
		switch {
		case !ok:
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

// exampleBodies are the project's example resources and Bundles, valid and
// invalid.
func exampleBodies(t testing.TB) [][]byte {
	var bodies [][]byte
	for _, dir := range []string{"../examples/resources/valid", "../examples/resources/invalid", "../examples/bundles"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			bodies = append(bodies, b)
		}
	}
	if len(bodies) < 5 {
		t.Fatalf("only %d example files found", len(bodies))
	}
	return bodies
}

// checkJSONBodies are the bodies the token reader is compared on: the
// examples, the strict check's own cases, and bodies broken on purpose.
func checkJSONBodies(t testing.TB) [][]byte {
	bodies := exampleBodies(t)
	for _, s := range []string{
		`{"resourceType":"EpisodeOfCare","patient":{"identifier":{"value":"1","_value":{"id":"x"}}},"a":[{"b":1},{"c":[1,2]}]}`,
		`{"patient":{"identifier":{"value":"1","Value":"2"}}}`, `{"_Status":{}}`, `{"ResourceType":"Bundle"}`,
		`{"status":"active","status":"cancelled"}`, `{"entry":[{},{"request":{"url":"a","url":"b"}}]}`, `{"":1}`,
		`{"a":{"B":1,"B":2}}`, `{"\u0076alue":1,"value":2}`, `{"\u0056alue":1}`, `{"a\/b":1,"a/b":2}`, `{"\ud800":1,"\ufffd":2}`,
		"{\"\xff\":1,\"\xfe\":2,\"\ufffd\":3}", `{"a" "b"}`, `{"a":1,}`, `[1,]`, `{"A":1 "B":2}`, `{"A":1}{"B":2}`, `{"A":1} {"B":2}`,
		`1 {"A":1}`, `12{"A":1}`, `true{"A":1}`, `tru{"A":1}`, `nul`, `"a"{"A":1}`, `{"A"x}`, `{"A":x}`, `{"A":-}`, `{"A":01,"B":1}`,
		`{"A":1.,"B":1}`, `{"A":1e,"B":1}`, `{"A":1e+5,"B":-0.5E-3,"C":[true,false,null]}`, `{"A":"\x01","B":1}`, `{"A":"\q","B":1}`,
		`{"A":"\u12","B":1}`, `{"A":[1 2],"B":1}`, `{"A":{"B":1}`, `{"A":[}`, `]`, `}`, `,`, `:`, ``, ` `, `{,"A":1}`, `{"A"::1}`,
		`{"A":1,"B":[{"C":{"D":[[[{"E":1}]]]}}]}`, `[{"A":1},{"A":1}]`, `{"a":{"b":{"c":1,"c":2},"b":3}}`,
	} {
		bodies = append(bodies, []byte(s))
	}
	deep := bytes.Repeat([]byte(`{"a":`), MaxJSONDepth+2)
	return append(bodies, deep, append(bytes.Repeat([]byte(`[`), MaxJSONDepth), `{"A":1}`...))
}

// TestTokensAgreeWithDecoder: CheckJSON finds exactly what it found
// reading json.Decoder's tokens (the same issues, the same stopping point
// at a syntax error), on the examples, the hand-made cases and 20,000
// random corruptions of them.
func TestTokensAgreeWithDecoder(t *testing.T) {
	bodies := checkJSONBodies(t)
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := []byte("{}[]:,\"\\ \n01-.eE+tfnuAaZ_\x00\x1f\x7f\xff")
	n := len(bodies)
	for i := 0; i < 20000; i++ {
		b := bytes.Clone(bodies[rng.IntN(n)])
		for k := rng.IntN(3) + 1; k > 0; k-- {
			at := 0
			if len(b) > 0 {
				at = rng.IntN(len(b))
			}
			switch c := alphabet[rng.IntN(len(alphabet))]; rng.IntN(3) {
			case 0:
				if len(b) > 0 {
					b[at] = c
				}
			case 1:
				b = append(b[:at], append([]byte{c}, b[at:]...)...)
			default:
				if len(b) > 0 {
					b = append(b[:at], b[at+1:]...)
				}
			}
		}
		bodies = append(bodies, b)
	}
	for i, b := range bodies {
		for _, root := range []string{"", "EpisodeOfCare"} {
			want, got := checkJSONByDecoder(b, root), CheckJSON(b, root)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("body %d %q (root %q):\n got %v\nwant %v", i, b, root, got, want)
			}
		}
	}
}

// FuzzCheckJSON compares CheckJSON with the Decoder's reading on any body.
func FuzzCheckJSON(f *testing.F) {
	for _, b := range checkJSONBodies(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want, got := checkJSONByDecoder(b, "R"), CheckJSON(b, "R")
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\n got %v\nwant %v", b, got, want)
		}
	})
}
