package fhir

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// treeCases are bodies the tree parser must read as encoding/json does, or
// leave to it.
var treeCases = []string{
	`{}`, ` {"a":1} `, "{\n\t\"a\" : [ 1 , 2.5e-3 , -0 , \"x\" ] \r\n}",
	`{"a":[]}`, `{"a":{}}`, `{"a":[[],[{}]]}`, `{"a":null,"b":true,"c":false}`,
	`{"a":"plain","b":"esc\"aped\\/\n","c":"\u00e9\ud83d\ude00","d":"\ud800"}`,
	"{\"a\":\"bad \xff utf-8\",\"b\":\"caf\xc3\xa9\"}",
	`{"a":1,"a":2}`, `{"\u0061":1,"a":2}`,
	`{"n":12345678901234567890,"m":1E400,"o":0.1}`,
	// Refused or quirky: encoding/json decides.
	`{"a":01}`, `{"a":-}`, `{"a":1.}`, `{"a":.5}`, `{"a":tru}`, `{"a":truex}`, `{"a":1,}`, `{,}`,
	`{"a" 1}`, `{"a":1}}`, `{"a":1} {}`, `{"a":1} x`, `[]`, `null`, `"s"`, ``, ` `, `{"a":"\x01"}`,
	"\xef\xbb\xbf{}", `{"a":"\u12"}`, `{"a":"\q"}`, `{"a":[1 2]}`, `{"a":[1,]}`, `{"a"`, `{"a":{"b":[`,
}

// TestTreeReadsAsEncodingJSON: where the parser gives an answer it is
// encoding/json's, for decodeObject's tree and for Members; and it answers
// the plain bodies (else it would save nothing).
func TestTreeReadsAsEncodingJSON(t *testing.T) {
	for _, body := range treeCases {
		checkTree(t, []byte(body))
	}
	for _, body := range []string{`{}`, ` {"a":1} `, `{"a":[[],[{}]]}`, `{"a":"plain","b":"esc\"aped","c":[1,2.5,null,true]}`} {
		if _, ok := fastTree([]byte(body)); !ok {
			t.Errorf("%s: the parser gave up on a plain body", body)
		}
		p := treeParser{t: tokens{b: []byte(body)}}
		if _, ok := p.members(); !ok {
			t.Errorf("%s: Members gave up on a plain body", body)
		}
	}
	deep := bytes.Repeat([]byte(`{"a":`), maxTreeDepth+1)
	if _, ok := fastTree(append(deep, bytes.Repeat([]byte(`}`), maxTreeDepth+1)...)); ok {
		t.Error("the parser read past its depth")
	}
}

func checkTree(t *testing.T, body []byte) {
	t.Helper()
	want, wantIssues := slowObject(body)
	if got, ok := fastTree(body); ok {
		if wantIssues != nil {
			t.Errorf("%q: the parser read a body encoding/json refuses (%v)", body, wantIssues)
		} else if !reflect.DeepEqual(got, want) {
			t.Errorf("%q: parser %#v, encoding/json %#v", body, got, want)
		}
	}
	var wantM map[string]json.RawMessage
	wantErr := json.Unmarshal(body, &wantM)
	gotM, gotErr := Members(body)
	if (gotErr == nil) != (wantErr == nil) || !reflect.DeepEqual(gotM, wantM) {
		t.Errorf("%q: Members %#v, %v; encoding/json %#v, %v", body, gotM, gotErr, wantM, wantErr)
	}
}

// slowObject is decodeObject without the parser.
func slowObject(body []byte) (map[string]any, []Issue) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, []Issue{{Diagnostics: err.Error()}}
	}
	if dec.More() {
		return nil, []Issue{{Diagnostics: "more"}}
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, []Issue{{Diagnostics: "not an object"}}
	}
	return m, nil
}

func FuzzTree(f *testing.F) {
	for _, body := range treeCases {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkTree(t, body) })
}

// BenchmarkTree reads an upload entry's plan into its tree with the
// parser (fast) and with encoding/json (slow), the reading it replaced.
func BenchmarkTree(b *testing.B) {
	body := []byte(benchEntryPlan)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, ok := fastTree(body); !ok {
				b.Fatal("the parser gave up")
			}
		}
	})
	b.Run("slow", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, issues := slowObject(body); issues != nil {
				b.Fatal(issues)
			}
		}
	})
}

// BenchmarkMembers splits a transaction entry into its members, as the
// upload does for each of its entries, with Members and with json.Unmarshal.
func BenchmarkMembers(b *testing.B) {
	body := []byte(`{"fullUrl":"urn:uuid:6b1d0c36-1f0b-4b7c-9f0e-3c2a1e0d9a01","resource":` + benchEntryPlan +
		`,"request":{"method":"PUT","url":"EpisodeOfCare?identifier=https://la001.example/plan-id|P-1"}}`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := Members(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("slow", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			var m map[string]json.RawMessage
			if err := json.Unmarshal(body, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

const benchEntryPlan = `{"resourceType":"EpisodeOfCare","id":"p1","status":"active",
 "identifier":[{"system":"https://la001.example/plan-id","value":"P-1"}],
 "type":[{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/plan-type","code":"CPP"}]}],
 "patient":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9449306753"}},
 "managingOrganization":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"LA001"}},
 "period":{"start":"2026-01-10"}}`
