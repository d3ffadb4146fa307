package fhir_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/fhir"
)

func TestCheckJSON(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string // expressions
	}{
		{"clean", `{"resourceType":"EpisodeOfCare","patient":{"identifier":{"value":"1","_value":{"id":"x"}}},"a":[{"b":1},{"c":[1,2]}]}`, nil},
		{"upper-case-first-letter", `{"patient":{"identifier":{"value":"1","Value":"2"}}}`, []string{"patient.identifier.Value"}},
		{"upper-case-underscore", `{"_Status":{}}`, []string{"_Status"}},
		{"resourceType-variant", `{"ResourceType":"Bundle"}`, []string{"ResourceType"}},
		{"duplicate", `{"status":"active","status":"cancelled"}`, []string{"status"}},
		{"duplicate-deep-in-array", `{"entry":[{},{"request":{"url":"a","url":"b"}}]}`, []string{"entry[1].request.url"}},
		{"empty-key", `{"":1}`, []string{""}},
		{"both", `{"a":{"B":1,"B":2}}`, []string{"a.B", "a.B", "a.B"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			issues := fhir.CheckJSON([]byte(tc.body), "")
			var got []string
			for _, is := range issues {
				assert.Equal(t, fhir.KindInvalid, is.Kind)
				got = append(got, is.Expression[0])
			}
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestCheckJSONDepth(t *testing.T) {
	ok := strings.Repeat(`{"a":`, fhir.MaxJSONDepth-1) + `1` + strings.Repeat(`}`, fhir.MaxJSONDepth-1)
	assert.Empty(t, fhir.CheckJSON([]byte(ok), ""))
	deep := strings.Repeat(`[`, 100000) + strings.Repeat(`]`, 100000)
	issues := fhir.CheckJSON([]byte(deep), "")
	require.Len(t, issues, 1)
	assert.Contains(t, issues[0].Diagnostics, "nests deeper")
}

// TestHazard_CaseVariantKeyRefusedByCodec: the codec refuses a body that
// google/fhir alone would read as one thing and encoding/json as another.
func TestHazard_CaseVariantKeyRefusedByCodec(t *testing.T) {
	c, err := fhir.NewCodec()
	require.NoError(t, err)
	res, issues := c.Decode([]byte(`{"resourceType":"EpisodeOfCare","status":"active","patient":{"identifier":{"value":"9449306702","Value":"9449306818"}}}`))
	assert.Nil(t, res)
	require.Len(t, issues, 1)
	assert.Equal(t, []string{"EpisodeOfCare.patient.identifier.Value"}, issues[0].Expression)
}

func TestDecodeRefusesYearZero(t *testing.T) {
	c, err := fhir.NewCodec()
	require.NoError(t, err)
	for _, tc := range []struct{ value, expr string }{
		{`"period":{"start":"0000-01-01"}`, "EpisodeOfCare.period.start"},
		{`"period":{"start":"0000"}`, "EpisodeOfCare.period.start"},
		{`"period":{"start":"2026-01-01","end":"0000-12-31T23:00:00-05:00"}`, "EpisodeOfCare.period.end"},
		{`"extension":[{"url":"https://x.example","valueDateTime":"0000-03"}]`, "EpisodeOfCare.extension[0].valueDateTime"},
		// The same year with its digits escaped: the shortcut that skips
		// the walk for a body with no "0000 must not skip this one.
		{`"period":{"start":"\u0030000-01-01"}`, "EpisodeOfCare.period.start"},
		{`"period":{"start":"0\u0030\u00300-01-01"}`, "EpisodeOfCare.period.start"},
	} {
		t.Run(tc.value, func(t *testing.T) {
			_, issues := c.Decode([]byte(`{"resourceType":"EpisodeOfCare","status":"active","patient":{"reference":"Patient/1"},` + tc.value + `}`))
			require.Len(t, issues, 1)
			assert.Equal(t, []string{tc.expr}, issues[0].Expression)
			assert.Equal(t, fhir.KindInvalid, issues[0].Kind)
		})
	}
	_, issues := c.Decode([]byte(`{"resourceType":"EpisodeOfCare","status":"active","patient":{"reference":"Patient/1"},"period":{"start":"0001-01-01"}}`))
	assert.Empty(t, issues, "year 0001 is a FHIR date")
	_, _, ok := fhir.ParseDateTime("0000-01-01", time.UTC)
	assert.False(t, ok)
}

func TestCollectorCaps(t *testing.T) {
	var c fhir.Collector
	c.Sorted = true
	for i := 250; i > 0; i-- {
		c.Add(fhir.Issue{Kind: fhir.KindInvalid, Expression: []string{fmt.Sprintf("x%04d", i)}})
	}
	got := c.Issues()
	require.Len(t, got, fhir.MaxIssues+1)
	assert.Equal(t, "x0001", got[0].Expression[0], "the first by expression are kept, whatever the order found")
	assert.Equal(t, "x0100", got[fhir.MaxIssues-1].Expression[0])
	assert.Equal(t, 150, got[fhir.MaxIssues].More)
	assert.Equal(t, "150 further problems not shown: correct those above and send again", got[fhir.MaxIssues].Diagnostics)
	oo := fhir.Outcome(append(got, got...), nil)
	require.Len(t, oo.Issue, fhir.MaxIssues+1)
	assert.Equal(t, "400 further problems not shown: correct those above and send again", oo.Issue[fhir.MaxIssues].Diagnostics)
}
