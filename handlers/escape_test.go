package handlers

import (
	"net/url"
	"testing"
)

func FuzzQueryEscape(f *testing.F) {
	for _, s := range []string{"https://fhir.nhs.uk/Id/nhs-number|9449306753", "a b&c=d", "ü%+,", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := queryEscape(s)
		got, err := url.QueryUnescape(e)
		if err != nil || got != s {
			t.Fatalf("queryEscape(%q) = %q, which reads back as %q (%v)", s, e, got, err)
		}
		q, err := url.ParseQuery("x=" + e)
		if err != nil || q.Get("x") != s {
			t.Fatalf("queryEscape(%q) = %q does not survive as one query value", s, e)
		}
	})
}
