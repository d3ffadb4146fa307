package registry

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestHazard_RememberedCheckPassesAnotherChildsBody: remembering that a
// body passed the NHS-number check must never let a different body (or
// the same body asked under another number) pass without being checked.
func TestHazard_RememberedCheckPassesAnotherChildsBody(t *testing.T) {
	flag := func(nhs string) []byte {
		return []byte(`{"resourceType":"Flag","id":"f1","subject":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"` + nhs + `"}}}`)
	}
	v := newVerifiedBodies()
	a, b := "9449306753", "9449310394"
	for range 3 {
		assert.True(t, v.aboutOnly(flag(a), a))
		assert.False(t, v.aboutOnly(flag(b), a), "another child's body under this child's number")
		assert.False(t, v.aboutOnly(flag(a), b), "this body under another child's number")
		assert.False(t, v.aboutOnly(append(flag(a)[:len(flag(a))-1:len(flag(a))-1], `,"patient":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"`+b+`"}}}`...), a),
			"the checked body with a second patient added")
	}
	assert.Len(t, v.seen, 1, "only what passed is remembered")
	for i := range maxVerified + 10 {
		n := fmt.Sprint(i)
		assert.True(t, v.aboutOnly(flag(n), n))
	}
	assert.LessOrEqual(t, len(v.seen), maxVerified, "bounded")
	assert.True(t, v.aboutOnly(flag(a), a))
	assert.False(t, v.aboutOnly(flag(b), a))
}
