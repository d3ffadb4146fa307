package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
)

// RunOwnerScan checks store.OwnerScanner: an owner's live records of one
// type that end at or after a time (or have no end), in id order, each its
// current version with its body and no derived record; never another
// owner's, another type's, a tombstone or an ended one; an error from the
// callback stops the scan and comes back as it is.
func RunOwnerScan(t *testing.T, h Harness) {
	s := open(t, h)
	sc, ok := s.(store.OwnerScanner)
	require.True(t, ok, "the store implements store.OwnerScanner")
	ctx := context.Background()
	since := t0.Add(24 * time.Hour)
	// b: two versions, the current one with its Flag and an end after since.
	put(t, s, plan("b", 1, "9449306753", "LA1", "LA1|https://la1.example/id|b"))
	cur := withFlag(plan("b", 2, "9449306761", "LA1", "LA1|https://la1.example/id|b"), "active")
	cur.End = since.Add(time.Hour)
	put(t, s, cur)
	put(t, s, plan("a", 1, "9449306753", "LA1")) // open-ended
	put(t, s, plan("c", 1, "9449306753", "LA2")) // another owner's
	ended := plan("d", 1, "9449306753", "LA1")   // ended before since
	ended.End = since.Add(-time.Nanosecond)
	put(t, s, ended)
	put(t, s, plan("e", 1, "9449306753", "LA1")) // deleted
	put(t, s, store.Record{Type: "EpisodeOfCare", ID: "e", Version: 2, Updated: t0.Add(time.Hour), Deleted: true, Owner: "LA1", Subject: "9449306753"})
	org := plan("f", 1, "", "LA1") // another type
	org.Type, org.Body = "Organization", []byte(`{"resourceType":"Organization","id":"f"}`)
	put(t, s, org)

	var got []store.Record
	require.NoError(t, sc.ScanOwner(ctx, "EpisodeOfCare", "LA1", since, func(r *store.Record) error {
		c := *r
		c.Body = append([]byte(nil), r.Body...)
		got = append(got, c)
		return nil
	}))
	require.Len(t, got, 2)
	assert.Equal(t, "a", got[0].ID)
	assert.True(t, got[0].End.IsZero())
	assert.Equal(t, "b", got[1].ID)
	assert.Equal(t, int64(2), got[1].Version)
	assert.True(t, cur.Updated.Equal(got[1].Updated))
	assert.True(t, cur.End.Equal(got[1].End))
	assert.Equal(t, "9449306761", got[1].Subject)
	assert.Equal(t, "LA1", got[1].Owner)
	assert.Equal(t, "EpisodeOfCare", got[1].Type)
	assert.JSONEq(t, string(cur.Body), string(got[1].Body))
	assert.Nil(t, got[1].Derived)
	assert.Empty(t, got[1].Keys)

	// Without a bound the ended plan is read too.
	var ids []string
	require.NoError(t, sc.ScanOwner(ctx, "EpisodeOfCare", "LA1", time.Time{}, func(r *store.Record) error {
		ids = append(ids, r.ID)
		return nil
	}))
	assert.Equal(t, []string{"a", "b", "d"}, ids)

	stop := errors.New("stop")
	n := 0
	err := sc.ScanOwner(ctx, "EpisodeOfCare", "LA1", time.Time{}, func(*store.Record) error { n++; return stop })
	assert.Same(t, stop, err)
	assert.Equal(t, 1, n)
}
