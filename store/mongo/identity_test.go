package mongo

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	mongodrv "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"cpis/store"
)

func mustDrop(t *testing.T, uri, name string) {
	t.Helper()
	c, err := mongodrv.Connect(options.Client().ApplyURI(uri))
	require.NoError(t, err)
	defer c.Disconnect(context.Background())
	require.NoError(t, c.Database(name).Drop(context.Background()))
}

// TestHazard_DroppedDatabaseComesBackEmpty: a database that was dropped
// refuses the start of a server whose data directory has held it, until
// the operator resets the identity; dropped under a running server, the
// store fails and every call answers ErrUnavailable instead of writing
// into a new empty database.
func TestHazard_DroppedDatabaseComesBackEmpty(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			dir, name := t.TempDir(), freshDB()
			s, err := Open(ctx, b.uri, name, Options{MarkerDir: dir, WatchInterval: 20 * time.Millisecond})
			require.NoError(t, err)
			require.NoError(t, s.Commit(ctx, []store.Write{{Record: plan("p1", 1, "9449306753", "LA001")}}))
			marker, err := store.ReadMarker(dir)
			require.NoError(t, err)
			require.Equal(t, s.ID(), marker)

			mustDrop(t, b.uri, name)
			require.Eventually(t, func() bool { return s.Ping(ctx) != nil }, 5*time.Second, 10*time.Millisecond)
			assert.ErrorIs(t, s.Commit(ctx, []store.Write{{Record: plan("p2", 1, "9449306753", "LA001")}}), store.ErrUnavailable)
			assert.ErrorIs(t, s.Audit(ctx, []store.AuditRecord{audit("a1", t0, "9449306753", "u", true, "LA001")}), store.ErrUnavailable)
			_, _, err = s.Search(ctx, store.Query{Type: "Flag", Subject: "9449306753", Limit: 10})
			assert.ErrorIs(t, err, store.ErrUnavailable)
			require.NoError(t, s.Close())

			_, err = Open(ctx, b.uri, name, Options{MarkerDir: dir})
			require.ErrorIs(t, err, store.ErrStoreIdentity)
			assert.Contains(t, err.Error(), "cpis store init --force")

			s, err = Open(ctx, b.uri, name, Options{MarkerDir: dir, ResetIdentity: true})
			require.NoError(t, err)
			assert.NotEqual(t, marker, s.ID())
			require.NoError(t, s.Close())
			s, err = Open(ctx, b.uri, name, Options{MarkerDir: dir})
			require.NoError(t, err, "after the reset it starts as usual")
			require.NoError(t, s.Close())

			// Another data directory's store is refused as well.
			other := freshDB()
			o, err := Open(ctx, b.uri, other, Options{})
			require.NoError(t, err)
			require.NoError(t, o.Close())
			_, err = Open(ctx, b.uri, other, Options{MarkerDir: dir})
			require.ErrorIs(t, err, store.ErrStoreIdentity)
		})
	}
}
