package fhir_test

import (
	"io"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/fhir"
)

func TestValidNHSNumber(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"9449306753", true},
		{"9449306761", true},
		{"4010232137", true},
		{"9449306754", false}, // wrong check digit
		{"944930675", false},  // nine digits
		{"94493067530", false},
		{"944930675X", false},
		{" 449306753", false},
		{"", false},
		{"1000000010", false}, // check digit would be 10
		{"0000000000", false}, // passes Modulus 11, but is no one's NHS number
	} {
		t.Run(tc.in, func(t *testing.T) { assert.Equal(t, tc.want, fhir.ValidNHSNumber(tc.in)) })
	}
}

// referenceCheck is the NHS Data Dictionary algorithm written out plainly,
// with big-number arithmetic, to compare the fast check against.
func referenceCheck(s string) bool {
	if len(s) != 10 || s == "0000000000" { // all zeros passes the sum but is not issued
		return false
	}
	sum := new(big.Int)
	for i := 0; i < 10; i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	for i := 0; i < 9; i++ {
		sum.Add(sum, big.NewInt(int64(s[i]-'0')*int64(10-i)))
	}
	rem := new(big.Int).Mod(sum, big.NewInt(11)).Int64()
	check := 11 - rem
	if check == 11 {
		check = 0
	}
	if check == 10 {
		return false
	}
	return check == int64(s[9]-'0')
}

func FuzzValidNHSNumber(f *testing.F) {
	for _, s := range []string{"9449306753", "9449306754", "", "0000000000", "1000000010", "99999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := fhir.ValidNHSNumber(s), referenceCheck(s); got != want {
			t.Fatalf("ValidNHSNumber(%q) = %v, want %v", s, got, want)
		}
		if len(s) == 10 && fhir.ValidNHSNumber(s) {
			if d := fhir.NHSNumberCheckDigit(s[:9]); d != int(s[9]-'0') {
				t.Fatalf("check digit of %q is %d", s[:9], d)
			}
		}
	})
}

func TestParseSearch(t *testing.T) {
	q, err := fhir.ParseSearch("patient:identifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C9449306753&_count=10&_include=Flag:author&subject.identifier=a,b\\,c&_id=x")
	require.Nil(t, err)
	assert.Equal(t, 10, q.Count)
	require.Len(t, q.Params, 3)
	assert.Equal(t, fhir.Param{Name: "patient", Modifier: "identifier", Raw: "patient:identifier", Values: []string{"https://fhir.nhs.uk/Id/nhs-number|9449306753"}}, q.Params[0])
	assert.Equal(t, "subject", q.Params[1].Name)
	assert.Equal(t, "identifier", q.Params[1].Chain)
	assert.Equal(t, []string{"a", "b,c"}, q.Params[1].Values)
	assert.Equal(t, []fhir.Include{{Source: "Flag", Param: "author", Raw: "Flag:author"}}, q.Includes)
	// The national CP-IS API's include, as published and URL-encoded.
	for _, raw := range []string{
		"_include=AuditEvent:entity-type=http://terminology.hl7.org/CodeSystem/v3-RoleClass|ASSIGNED",
		"_include=AuditEvent%3Aentity-type%3Dhttp%3A%2F%2Fterminology.hl7.org%2FCodeSystem%2Fv3-RoleClass%7CASSIGNED",
	} {
		nq, err := fhir.ParseSearch(raw)
		require.Nil(t, err, raw)
		require.Len(t, nq.Includes, 1, raw)
		inc := nq.Includes[0]
		assert.Equal(t, fhir.Include{Source: "AuditEvent", Param: "entity-type", Value: "http://terminology.hl7.org/CodeSystem/v3-RoleClass|ASSIGNED",
			Raw: "AuditEvent:entity-type=http://terminology.hl7.org/CodeSystem/v3-RoleClass|ASSIGNED"}, inc, raw)
		assert.Equal(t, inc.Raw, inc.Name())
	}
	tok := fhir.ParseToken(q.Params[0].Values[0])
	assert.Equal(t, fhir.Token{System: fhir.NHSNumberSystem, Code: "9449306753", HasSystem: true}, tok)

	for _, bad := range []string{"_count=-1", "_count=x", "_count=1&_count=2", "_include=Flag", "_include=AuditEvent:agent=", "_include=AuditEvent:agent:PractitionerRole=x", "a%zz=1", "=1", "x=%zz", strings.Repeat("a=1&", 70)} {
		_, err := fhir.ParseSearch(bad)
		assert.NotNil(t, err, bad)
		if err != nil {
			fe := fhir.As(err)
			require.NotNil(t, fe, bad)
			assert.Equal(t, fhir.KindInvalidSearch, fe.Kind)
			assert.Equal(t, fhir.KindInvalidSearch, fe.Issues[0].Kind)
		}
	}
	q, err = fhir.ParseSearch("_count=5000")
	require.Nil(t, err)
	assert.Equal(t, fhir.MaxCount, q.Count)
}

func FuzzParseSearch(f *testing.F) {
	for _, s := range []string{
		"patient:identifier=https://fhir.nhs.uk/Id/nhs-number|9449306753&_include=Flag:author",
		"a=1&b=2,3&_count=10&_cursor=abc", "date=ge2026-01-01", "x.y:z=%2C", "", "&&&", "_include=a:b:c&_include=x:y",
		"_include=AuditEvent:entity-type=http://terminology.hl7.org/CodeSystem/v3-RoleClass|ASSIGNED", "_include=a:b=c=d",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := fhir.ParseSearch(raw)
		if err != nil {
			if fe := fhir.As(err); fe == nil || fe.Kind != fhir.KindInvalidSearch || len(fe.Issues) == 0 {
				t.Fatalf("bad error %+v", err)
			}
			return
		}
		if q.Count < 0 || q.Count > fhir.MaxCount {
			t.Fatalf("count %d out of range", q.Count)
		}
		for _, p := range q.Params {
			if p.Name == "" || len(p.Values) == 0 {
				t.Fatalf("empty parameter %+v", p)
			}
			for _, v := range p.Values {
				tok := fhir.ParseToken(v)
				_ = tok
				_, _ = fhir.ParseDate(v, time.UTC)
			}
		}
	})
}

func TestDecodeReportsEveryProblem(t *testing.T) {
	c, err := fhir.NewCodec()
	require.NoError(t, err)
	res, issues := c.Decode([]byte(`{"resourceType":"EpisodeOfCare","colour":1,"status":"bogus","period":{"start":"2024-13-01"}}`))
	require.NotNil(t, res)
	var exprs []string
	for _, is := range issues {
		exprs = append(exprs, is.Expression[0])
		assert.Equal(t, fhir.KindInvalid, is.Kind)
	}
	assert.Equal(t, []string{"EpisodeOfCare.colour", "EpisodeOfCare.period.start", "EpisodeOfCare.status"}, exprs)

	_, issues = c.Decode([]byte(`{"resourceType":"EpisodeOfCare","status":"active"}`))
	require.Len(t, issues, 1)
	assert.Equal(t, fhir.KindUnprocessable, issues[0].Kind)
	assert.Equal(t, []string{"EpisodeOfCare.patient"}, issues[0].Expression)

	for _, bad := range []string{``, `[]`, `{"a":1}`, `{"resourceType":5}`, `{"resourceType":"Nope"}`, `{} {}`, `{"resourceType":"Flag"`} {
		_, issues := c.Decode([]byte(bad))
		assert.NotEmpty(t, issues, bad)
		for _, is := range issues {
			assert.NotContains(t, is.Diagnostics, "json:", "no Go error strings")
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"resourceType":"EpisodeOfCare","id":"a","status":"active","patient":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9449306753"}},"period":{"start":"2026-01-01"}}`,
		`{"resourceType":"Organization","name":"x","contact":[{"telecom":[{"system":"phone","value":"1"}]}]}`,
		`{"resourceType":"Flag","status":"active","code":{"text":"x"},"subject":{"reference":"Patient/1"}}`,
		`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Flag"}}]}`,
		`{"resourceType":"EpisodeOfCare","contained":[{"resourceType":"Patient","id":"p"}],"extension":[{"url":"x","valueDecimal":1.50}]}`,
		`[`, `{}`, `null`,
	} {
		f.Add([]byte(s))
	}
	c, err := fhir.NewCodec()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		res, issues := c.Decode(body)
		if res == nil && len(issues) == 0 {
			t.Fatal("no resource and no issue")
		}
		for _, is := range issues {
			if is.Kind == fhir.KindNone || is.Diagnostics == "" {
				t.Fatalf("issue without code or words: %+v", is)
			}
		}
		if res != nil && len(issues) == 0 {
			// A valid resource encodes to JSON that decodes again, valid.
			again, more := c.Decode(res.Encode())
			if again == nil || len(more) != 0 {
				t.Fatalf("re-encoded resource is not valid: %v", more)
			}
		}
	})
}

func TestBundleEncoding(t *testing.T) {
	total := 1
	b := &fhir.Bundle{Type: "searchset", Total: &total, Link: []fhir.Link{{Relation: "self", URL: "http://x/Flag?a=1&b=2"}},
		Entry: []fhir.Entry{{FullURL: "http://x/Flag/1", Resource: []byte(`{"resourceType":"Flag","id":"1"}`), Search: &fhir.EntrySearch{Mode: "match"}}}}
	assert.JSONEq(t, `{"resourceType":"Bundle","type":"searchset","total":1,"link":[{"relation":"self","url":"http://x/Flag?a=1&b=2"}],
	  "entry":[{"fullUrl":"http://x/Flag/1","resource":{"resourceType":"Flag","id":"1"},"search":{"mode":"match"}}]}`, string(b.AppendJSON(nil)))
	assert.Equal(t, `"a\"b\\c\n\u0001<&>\u2028"`, string(fhir.AppendString(nil, "a\"b\\c\n\x01<&>\u2028")))
}

func TestCompactReaderKeepsTheMeaning(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"  {\n\t\"a\" :  [1 ,  2]  }  ", ` { "a" : [1 , 2] } `},
		{`{"s":"  keep \"  these  \\"  }`, `{"s":"  keep \"  these  \\" }`},
		{"[1    2]", "[1 2]"}, // still two tokens, still invalid
	} {
		b, err := io.ReadAll(fhir.CompactReader(strings.NewReader(tc.in)))
		require.NoError(t, err)
		assert.Equal(t, tc.want, string(b))
	}
}
