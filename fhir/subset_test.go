package fhir_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/fhir"
)

func TestSubsetApply(t *testing.T) {
	const flag = `{"resourceType":"Flag","id":"f1","meta":{"versionId":"2"},"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},` +
		`"extension":[{"url":"u","valueString":"v"}],"status":"active","category":[{"text":"c"}],"code":{"text":"CPP"},"subject":{"display":"s"},"author":{"display":"a"}}`
	tag := `"tag":[{"code":"SUBSETTED","display":"subsetted","system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue"}]`
	for _, tc := range []struct {
		name string
		sub  fhir.Subset
		want string
	}{
		{"whole", fhir.Subset{}, flag},
		{"false", fhir.Subset{Summary: fhir.SummaryFalse}, flag},
		{"count-is-not-a-rendering", fhir.Subset{Summary: fhir.SummaryCount}, flag},
		{"true", fhir.Subset{Summary: fhir.SummaryTrue}, `{"resourceType":"Flag","id":"f1","meta":{` + tag + `,"versionId":"2"},"author":{"display":"a"},"category":[{"text":"c"}],"code":{"text":"CPP"},"status":"active","subject":{"display":"s"}}`},
		{"text", fhir.Subset{Summary: fhir.SummaryText}, `{"resourceType":"Flag","id":"f1","meta":{` + tag + `,"versionId":"2"},"code":{"text":"CPP"},"status":"active","subject":{"display":"s"},"text":{"div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>","status":"generated"}}`},
		{"data", fhir.Subset{Summary: fhir.SummaryData}, `{"resourceType":"Flag","id":"f1","meta":{` + tag + `,"versionId":"2"},"author":{"display":"a"},"category":[{"text":"c"}],"code":{"text":"CPP"},"extension":[{"url":"u","valueString":"v"}],"status":"active","subject":{"display":"s"}}`},
		{"elements", fhir.Subset{Elements: []string{"author"}}, `{"resourceType":"Flag","id":"f1","meta":{` + tag + `,"versionId":"2"},"author":{"display":"a"},"code":{"text":"CPP"},"status":"active","subject":{"display":"s"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.sub.Apply("Flag", []byte(flag))
			assert.JSONEq(t, tc.want, string(got))
			res, issues := mustCodec(t).Decode(got)
			require.NotNil(t, res)
			for _, is := range issues {
				assert.NotEqual(t, "error", is.Severity, "valid R4: %v", is)
			}
			assert.Equal(t, tc.name != "whole" && tc.name != "false" && tc.name != "count-is-not-a-rendering", res.IsSubsetted())
		})
	}
}

func TestParseElements(t *testing.T) {
	els, err := fhir.ParseElements("Flag", []string{"status", "Flag.period", "EpisodeOfCare.type", " code "})
	require.NoError(t, err)
	assert.Equal(t, []string{"status", "period", "code"}, els)
	for _, bad := range []string{"period.start", "Flag.period.start", "a-b", "1x"} {
		_, err := fhir.ParseElements("Flag", []string{bad})
		assert.Error(t, err, bad)
	}
}

func mustCodec(t *testing.T) *fhir.Codec {
	t.Helper()
	c, err := fhir.NewCodec()
	require.NoError(t, err)
	return c
}
