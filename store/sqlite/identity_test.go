package sqlite

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
)

func putPlan(t *testing.T, s *Store, id string) {
	t.Helper()
	require.NoError(t, s.Commit(context.Background(), []store.Write{{Record: store.Record{
		Type: "EpisodeOfCare", ID: id, Version: 1, Updated: time.Now(), Owner: "LA001", Subject: "9449306753",
		Body: []byte(`{"resourceType":"EpisodeOfCare"}`), Derived: &store.Derived{Type: "Flag", Body: []byte(`{"resourceType":"Flag"}`)},
	}}}))
}

func removeDB(t *testing.T, dir string) {
	t.Helper()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		err := os.Remove(filepath.Join(dir, FileName+suffix))
		if !os.IsNotExist(err) {
			require.NoError(t, err)
		}
	}
}

// TestHazard_LostDatabaseRestartsEmpty: a data directory that has held a
// store refuses to start on a missing, emptied or different database (every
// child would be "no flags"), until the operator resets the identity.
func TestHazard_LostDatabaseRestartsEmpty(t *testing.T) {
	cases := []struct {
		name string
		lose func(t *testing.T, dir string)
	}{
		{"deleted", removeDB},
		{"emptied", func(t *testing.T, dir string) {
			removeDB(t, dir)
			require.NoError(t, os.WriteFile(filepath.Join(dir, FileName), nil, 0o600))
		}},
		{"replaced-by-another-store", func(t *testing.T, dir string) {
			other := t.TempDir()
			o, err := Open(other, Options{})
			require.NoError(t, err)
			require.NoError(t, o.Close())
			removeDB(t, dir)
			b, err := os.ReadFile(filepath.Join(other, FileName))
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(dir, FileName), b, 0o600))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir, Options{})
			require.NoError(t, err)
			id := s.ID()
			putPlan(t, s, "p1")
			require.NoError(t, s.Close())
			marker, err := store.ReadMarker(dir)
			require.NoError(t, err)
			require.Equal(t, id, marker, "the marker names the store")

			tc.lose(t, dir)
			_, err = Open(dir, Options{})
			require.ErrorIs(t, err, store.ErrStoreIdentity)
			assert.Contains(t, err.Error(), "cpis store init --force", "the refusal says what to do")
			if tc.name == "deleted" {
				_, statErr := os.Stat(filepath.Join(dir, FileName))
				assert.True(t, os.IsNotExist(statErr), "the refusal creates no empty database")
			}

			s, err = Open(dir, Options{ResetIdentity: true})
			require.NoError(t, err, "the operator accepts the database")
			marker, err = store.ReadMarker(dir)
			require.NoError(t, err)
			assert.Equal(t, s.ID(), marker)
			assert.NotEqual(t, id, s.ID())
			require.NoError(t, s.Close())
			s, err = Open(dir, Options{})
			require.NoError(t, err, "and after that it starts as usual")
			require.NoError(t, s.Close())
		})
	}
}

// TestIdentityOfAnExistingDatabase: a database from before the marker gets
// one; a fresh directory gets both.
func TestIdentityOfAnExistingDatabase(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	require.NoError(t, err)
	putPlan(t, s, "p1")
	id := s.ID()
	require.NoError(t, s.Close())
	require.NoError(t, os.Remove(filepath.Join(dir, store.MarkerFile)))

	s, err = Open(dir, Options{})
	require.NoError(t, err)
	defer s.Close()
	marker, err := store.ReadMarker(dir)
	require.NoError(t, err)
	assert.Equal(t, id, marker)
	assert.Equal(t, id, s.ID())
}

// TestHazard_DatabaseDeletedWhileRunning: the watcher notices the file is
// gone or replaced and fails the store: writes and reads answer
// ErrUnavailable (a 503), Ping too, and nothing is written to the unlinked
// file as if it were durable.
func TestHazard_DatabaseDeletedWhileRunning(t *testing.T) {
	for _, tc := range []struct {
		name string
		lose func(t *testing.T, dir string)
	}{
		{"deleted", removeDB},
		{"replaced", func(t *testing.T, dir string) {
			removeDB(t, dir)
			require.NoError(t, os.WriteFile(filepath.Join(dir, FileName), nil, 0o600))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir, Options{WatchInterval: 20 * time.Millisecond})
			require.NoError(t, err)
			defer s.Close()
			ctx := context.Background()
			putPlan(t, s, "p1")
			require.NoError(t, s.Ping(ctx))

			tc.lose(t, dir)
			require.Eventually(t, func() bool { return s.Ping(ctx) != nil }, 5*time.Second, 10*time.Millisecond)
			assert.ErrorIs(t, s.Ping(ctx), store.ErrUnavailable)
			err = s.Audit(ctx, []store.AuditRecord{{ID: "a", Recorded: time.Now(), Subject: "9449306753", Agent: "u", Body: []byte("{}")}})
			assert.ErrorIs(t, err, store.ErrUnavailable)
			_, _, err = s.Search(ctx, store.Query{Type: "Flag", Subject: "9449306753", Limit: 10})
			assert.ErrorIs(t, err, store.ErrUnavailable)
			_, err = s.Get(ctx, "Flag", "p1")
			assert.ErrorIs(t, err, store.ErrUnavailable)
		})
	}
}

// TestStartupCheckFindsADamagedIndex: an index missing a row (the table and
// the index disagree, which quick_check does not see) refuses the start.
func TestStartupCheckFindsADamagedIndex(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	require.NoError(t, err)
	putPlan(t, s, "p1")
	require.NoError(t, s.Close())

	// Make resources_subject a partial index that takes no rows, add a row,
	// and make it a full index again: the new row is missing from it.
	hideFromIndex(t, filepath.Join(dir, FileName), "resources_subject", `CREATE INDEX resources_subject ON resources(subject)`,
		`INSERT INTO resources(type, id, version, updated, deleted, owner, subject, dtype) VALUES ('EpisodeOfCare', 'p2', 1, 0, 0, 'LA001', '9449306761', 'Flag')`)

	_, err = Open(dir, Options{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "resources_subject")
	assert.Contains(t, err.Error(), "damaged")
}

// TestStartupCheckIsBoundedInTime: a check that runs out of time says what
// it did not check and lets the start go on.
func TestStartupCheckIsBoundedInTime(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	require.NoError(t, err)
	putPlan(t, s, "p1")
	require.NoError(t, s.Close())
	var logs bytes.Buffer
	s, err = Open(dir, Options{CheckTimeout: time.Nanosecond, Log: slog.New(slog.NewJSONHandler(&logs, nil))})
	require.NoError(t, err)
	defer s.Close()
	assert.Contains(t, logs.String(), "the start-up integrity check stopped at its time limit")
	assert.Contains(t, logs.String(), `"level":"WARN"`)
}
