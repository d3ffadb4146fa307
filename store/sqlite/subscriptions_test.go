package sqlite_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"cpis/store"
	"cpis/store/sqlite"
	"cpis/store/storetest"
)

func TestSubscriptionsConformance(t *testing.T) {
	dirs := map[store.Store]string{}
	storetest.RunSubscriptions(t, storetest.Harness{
		Open: func(t *testing.T) store.Store {
			dir := t.TempDir()
			s, err := sqlite.Open(dir, sqlite.Options{})
			require.NoError(t, err)
			dirs[s] = dir
			return s
		},
		Reopen: func(t *testing.T, s store.Store) store.Store {
			dir := dirs[s]
			require.NoError(t, s.Close())
			s2, err := sqlite.Open(dir, sqlite.Options{})
			require.NoError(t, err)
			return s2
		},
	}, nil)
}
