package mongo

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"cpis/store"
	"cpis/store/storetest"
)

func TestSubscriptionsConformance(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			names := map[store.Store]string{}
			openAt := func(t *testing.T, name string) store.Store {
				s, err := Open(context.Background(), b.uri, name, Options{})
				require.NoError(t, err)
				names[s] = name
				return s
			}
			h := storetest.Harness{
				Open: func(t *testing.T) store.Store {
					name := freshDB()
					if !b.ferret {
						t.Cleanup(func() { dropDB(t, b.uri, name) })
					}
					return openAt(t, name)
				},
				Reopen: func(t *testing.T, s store.Store) store.Store {
					require.NoError(t, s.Close())
					return openAt(t, names[s])
				},
			}
			// A second server process on the same database.
			twin := func(t *testing.T, s store.Store) store.Store { return openAt(t, names[s]) }
			storetest.RunSubscriptions(t, h, twin)
		})
	}
}
