package handlers

import (
	"testing"

	"cpis/fhir"
)

// TestErrorKindTable checks the one table from error kinds to answers: every
// kind has a row, and the rows' statuses rise in the order of the kinds, so
// that fhir.Join and fhir.Invalid, which answer for several problems with
// the first kind in that order, answer with the lowest status (a 400 before
// a 403 before a 422), as the handlers always did.
func TestErrorKindTable(t *testing.T) {
	prev := 0
	for _, k := range fhir.Kinds() {
		r, ok := kinds[k]
		if !ok {
			t.Errorf("kind %s has no row", k)
			continue
		}
		if r.status < prev {
			t.Errorf("kind %s answers %d, below the %d of a kind before it: fhir.Join would pick the wrong one", k, r.status, prev)
		}
		prev = r.status
		if r.issueType == "" || r.code == "" || r.display == "" {
			t.Errorf("kind %s: incomplete row %+v", k, r)
		}
	}
	if len(kinds) != len(fhir.Kinds()) {
		t.Errorf("the table has %d rows for %d kinds", len(kinds), len(fhir.Kinds()))
	}
}
