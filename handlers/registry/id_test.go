package registry_test

import (
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"

	"cpis/fhir"
	"cpis/handlers/registry"
)

// TestNewIDsSortInCreationOrder: the ids of created resources and access
// records sort in the order they were made, so a store's id indexes grow at
// their end. With random (version 4) ids, each of the 1,000 plans of an
// upload landed on a random page of every id index: at 150,000 children one
// transaction wrote thousands of index pages and took 1.5 to 2.5 s to commit.
func TestNewIDsSortInCreationOrder(t *testing.T) {
	ids := make([]string, 5000)
	for i := range ids {
		ids[i] = registry.NewResourceID()
	}
	assert.True(t, sort.StringsAreSorted(ids), "ids made one after another sort one after another")
	seen := map[string]bool{}
	for _, id := range ids {
		assert.True(t, fhir.ValidID(id), id)
		assert.Len(t, id, 36)
		assert.False(t, seen[id], "unique")
		seen[id] = true
	}
}
