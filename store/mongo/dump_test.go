package mongo

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"cpis/store"
	"cpis/store/sqlite"
	"cpis/store/storetest"
)

// TestDumpLoad moves a store between the backends both ways (and MongoDB to
// MongoDB): the target answers as the source did.
func TestDumpLoad(t *testing.T) {
	lite := storetest.Harness{Open: func(t *testing.T) store.Store {
		s, err := sqlite.Open(t.TempDir(), sqlite.Options{})
		require.NoError(t, err)
		return s
	}}
	for _, b := range backends(t) {
		mongo := storetest.Harness{Open: func(t *testing.T) store.Store {
			s, err := Open(context.Background(), b.uri, freshDB(), Options{})
			require.NoError(t, err)
			return s
		}}
		t.Run("sqlite-to-"+b.name, func(t *testing.T) { storetest.RunDump(t, lite, mongo) })
		t.Run(b.name+"-to-sqlite", func(t *testing.T) { storetest.RunDump(t, mongo, lite) })
		t.Run(b.name+"-to-"+b.name, func(t *testing.T) { storetest.RunDump(t, mongo, mongo) })
	}
}
