package handlers

import (
	"encoding/json"

	"github.com/gin-gonic/gin"

	"cpis/fhir"
)

// subsetKey holds the request's fhir.Subset (_summary, _elements): set by
// the read and search handlers as they parse the request, applied when the
// answer is rendered, after the registry has authorised and audited the
// read. Nothing else reads it, so a write's answer is never subsetted.
const subsetKey = "cpis.subset"

// readSubset reads _summary and _elements of a read by id (read, vread,
// history): _summary=count is for searches only.
func readSubset(c *gin.Context, typ string) error {
	q := c.Request.URL.Query()
	var sub fhir.Subset
	if vs, ok := q["_summary"]; ok {
		if len(vs) != 1 {
			return fhir.At(fhir.KindInvalid, "_summary", "Give _summary once")
		}
		if err := fhir.ParseSummary(vs[0]); err != nil || vs[0] == fhir.SummaryCount {
			return fhir.At(fhir.KindInvalid, "_summary", "_summary of a read must be true, text, data or false (count is for searches)")
		}
		sub.Summary = vs[0]
	}
	if vs, ok := q["_elements"]; ok {
		if len(vs) != 1 {
			return fhir.At(fhir.KindInvalid, "_elements", "Give _elements once, with the names separated by commas")
		}
		els, err := fhir.ParseElements(typ, splitComma(vs[0]))
		if err != nil {
			return err
		}
		sub.Elements = els
	}
	c.Set(subsetKey, sub)
	return nil
}

// setSubset keeps a search's subset for rendering.
func setSubset(c *gin.Context, sub fhir.Subset) { c.Set(subsetKey, sub) }

// subsetOf is the subset the request asked for (the whole resource if
// none).
func subsetOf(c *gin.Context) fhir.Subset {
	v, _ := c.Get(subsetKey)
	sub, _ := v.(fhir.Subset)
	return sub
}

// subsetted renders a resource of typ as the request's subset asks.
func subsetted(c *gin.Context, typ string, body []byte) []byte {
	return subsetOf(c).Apply(typ, body)
}

// subsetEntries renders the resources of a Bundle's entries (matches,
// includes, history) as the request's subset asks; outcome entries are
// left as they are.
func subsetEntries(c *gin.Context, b *fhir.Bundle) {
	sub := subsetOf(c)
	if sub.Whole() {
		return
	}
	for i := range b.Entry {
		e := &b.Entry[i]
		if len(e.Resource) == 0 || e.Search != nil && e.Search.Mode == "outcome" {
			continue
		}
		e.Resource = sub.Apply(typeOf(e.Resource), e.Resource)
	}
}

func splitComma(v string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(v); i++ {
		if i == len(v) || v[i] == ',' {
			out = append(out, v[start:i])
			start = i + 1
		}
	}
	return out
}

// typeOf reads the resourceType of an encoded resource.
func typeOf(body []byte) string {
	var head struct {
		ResourceType string `json:"resourceType"`
	}
	_ = json.Unmarshal(body, &head)
	return head.ResourceType
}
