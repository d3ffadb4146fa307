package mongo

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"cpis/store"
	"cpis/store/storetest"
)

func TestOwnerScanner(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			storetest.RunOwnerScan(t, storetest.Harness{Open: func(t *testing.T) store.Store {
				s, err := Open(context.Background(), b.uri, freshDB(), Options{})
				require.NoError(t, err)
				return s
			}})
		})
	}
}
