package sqlite

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The tombstone listing seeks the partial index of tombstones by owner, in
// id order: it never walks the LA's live records (150,000 for the largest)
// nor sorts.
func TestDeletedUsesItsIndex(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	require.NoError(t, err)
	defer s.Close()
	plan := explain(t, s, deletedSQL+"100", "LA001", "EpisodeOfCare", int64(0), "")
	assert.Contains(t, plan, "USING INDEX resources_deleted (owner=? AND id>?)", plan)
	assert.NotContains(t, plan, "SCAN", plan)
	assert.NotContains(t, plan, "TEMP B-TREE", plan)
}
