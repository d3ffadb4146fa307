package fhir

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"unicode/utf8"
)

// TestAppendStringIsEncodingJSONs: every ASCII byte, the line and
// paragraph separators, other runes and invalid UTF-8 are written as
// Marshal (encoding/json without HTML escaping) writes them, \b and \f
// included (encoding/json writes them short since Go 1.22).
func TestAppendStringIsEncodingJSONs(t *testing.T) {
	cases := []string{"", "plain", "\u2028\u2029", "é€😀", "\xff", "a\xc3", "\xed\xa0\x80", "<&>"}
	for c := 0; c < utf8.RuneSelf; c++ {
		cases = append(cases, string(rune(c)), "x"+string(rune(c))+"y")
	}
	for _, s := range cases {
		want, err := Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("%q: %s, encoding/json %s", s, got, want)
		}
	}
}

// TestAppendTreeIsMarshal: a resource's tree is written byte for byte as
// Marshal writes it (the stored body, and the "unchanged" comparison with
// what earlier versions stored, depend on it): the example resources and
// Bundles, hand-made edge cases and random trees.
func TestAppendTreeIsMarshal(t *testing.T) {
	var trees []any
	for i, b := range exampleBodies(t) {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("example %d: %v", i, err)
		}
		trees = append(trees, v)
	}
	trees = append(trees, nil, true, false, []any(nil), map[string]any(nil), []any{}, map[string]any{},
		json.Number(""), json.Number("0"), json.Number("-0.5e+10"), json.Number("12E-3"), json.Number("1.0"),
		1.5, 3, map[string]any{"b": []any{nil, "x", json.Number("2")}, "a": map[string]any{"z": false, "É": "\b"}, "": ""},
		[]string{"typed", "slice"})
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		trees = append(trees, randomTree(rng, 4))
	}
	for i, v := range trees {
		want, err := Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendTree(nil, v); !bytes.Equal(got, want) {
			t.Fatalf("tree %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// TestAppendTreePanicsOnAnInvalidNumber as writing it with Marshal did:
// a tree from encoding/json never holds one.
func TestAppendTreePanicsOnAnInvalidNumber(t *testing.T) {
	for _, n := range []string{"01", "1.", ".5", "+1", "1e", "-", "0x10", "NaN", "1_0"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%q: no panic", n)
				}
			}()
			appendTree(nil, json.Number(n))
		}()
	}
}

func randomTree(rng *rand.Rand, depth int) any {
	k := rng.IntN(7)
	if depth == 0 {
		k = rng.IntN(4)
	}
	switch k {
	case 0:
		return randomString(rng)
	case 1:
		return json.Number([]string{"0", "-1", "3.25", "1e10", "-0.0E-7", "123456789012345678901234567890"}[rng.IntN(6)])
	case 2:
		return rng.IntN(2) == 0
	case 3:
		return nil
	case 4, 5:
		m := map[string]any{}
		for n := rng.IntN(5); n > 0; n-- {
			m[randomString(rng)] = randomTree(rng, depth-1)
		}
		return m
	}
	var a []any
	for n := rng.IntN(4); n > 0; n-- {
		a = append(a, randomTree(rng, depth-1))
	}
	return a
}

func randomString(rng *rand.Rand) string {
	alphabet := []string{"a", "Z", "0", " ", "\"", "\\", "/", "\b", "\f", "\n", "\r", "\t", "\x00", "\x1f", "\x7f", "<", "&",
		"é", "\u2028", "\u2029", "😀", "\xff", "\xc3"}
	var b []byte
	for n := rng.IntN(8); n > 0; n-- {
		b = append(b, alphabet[rng.IntN(len(alphabet))]...)
	}
	return string(b)
}
