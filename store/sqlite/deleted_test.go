package sqlite_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
	"cpis/store/observed"
	"cpis/store/sqlite"
	"cpis/store/storetest"
)

func openTemp(t *testing.T) store.Store {
	s, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	require.NoError(t, err)
	return s
}

func TestDeletedLister(t *testing.T) {
	storetest.RunDeleted(t, storetest.Harness{Open: openTemp})
}

// The metrics wrapper the server puts around its store passes the listing
// through (the data-quality report finds it by type assertion).
func TestDeletedListerThroughObserved(t *testing.T) {
	var ops []string
	storetest.RunDeleted(t, storetest.Harness{Open: func(t *testing.T) store.Store {
		return observed.Wrap(openTemp(t), func(op string, _ time.Duration, _ error) { ops = append(ops, op) })
	}})
	assert.Contains(t, ops, "deleted")
}
