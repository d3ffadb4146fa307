package sqlite_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
	"cpis/store/observed"
	"cpis/store/storetest"
)

func TestOwnerScanner(t *testing.T) {
	storetest.RunOwnerScan(t, storetest.Harness{Open: openTemp})
}

// The metrics wrapper the server puts around its store passes the scan
// through (the data-quality report finds it by type assertion).
func TestOwnerScannerThroughObserved(t *testing.T) {
	var ops []string
	storetest.RunOwnerScan(t, storetest.Harness{Open: func(t *testing.T) store.Store {
		return observed.Wrap(openTemp(t), func(op string, _ time.Duration, _ error) { ops = append(ops, op) })
	}})
	assert.Contains(t, ops, "scan_owner")
}

// TestOwnerScanAcrossChunks: the scan reads in chunks of a few thousand
// records; every record comes once, in id order, across the chunks' seams.
func TestOwnerScanAcrossChunks(t *testing.T) {
	s := openTemp(t)
	defer s.Close()
	const n = 2*4096 + 5
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var ws []store.Write
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("p%05d", i)
		ws = append(ws, store.Write{Record: store.Record{Type: "EpisodeOfCare", ID: id, Version: 1, Updated: at, Owner: "LA1",
			Subject: "9449306753", Body: []byte(`{"resourceType":"EpisodeOfCare","id":"` + id + `"}`)}})
	}
	require.NoError(t, s.Commit(context.Background(), ws))
	i := 0
	require.NoError(t, s.(store.OwnerScanner).ScanOwner(context.Background(), "EpisodeOfCare", "LA1", time.Time{}, func(r *store.Record) error {
		assert.Equal(t, fmt.Sprintf("p%05d", i), r.ID)
		assert.Equal(t, `{"resourceType":"EpisodeOfCare","id":"`+r.ID+`"}`, string(r.Body))
		i++
		return nil
	}))
	assert.Equal(t, n, i)
}
