package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
)

// RunDeleted checks store.DeletedLister: an owner's tombstones of one type
// deleted since a time, in id order and paged, each with the body of the
// version it deleted; never another owner's, another type's, a live
// record or one written again after its deletion.
func RunDeleted(t *testing.T, h Harness) {
	s := open(t, h)
	dl, ok := s.(store.DeletedLister)
	require.True(t, ok, "the store implements store.DeletedLister")
	ctx := context.Background()
	del := func(r store.Record, at time.Time) {
		tomb := store.Record{Type: r.Type, ID: r.ID, Version: r.Version + 1, Updated: at, Deleted: true,
			Owner: r.Owner, Subject: r.Subject, End: at}
		if r.Derived != nil {
			tomb.Derived = &store.Derived{Type: r.Derived.Type}
		}
		put(t, s, tomb)
	}
	// d1..d4: LA1's plans, two versions each, deleted an hour apart.
	for i := 1; i <= 4; i++ {
		id := fmt.Sprintf("d%d", i)
		put(t, s, plan(id, 1, "9449306753", "LA1", "LA1|https://la1.example/id|"+id))
		r := withFlag(plan(id, 2, "9449306761", "LA1", "LA1|https://la1.example/id|"+id), "active")
		put(t, s, r)
		del(r, t0.Add(time.Duration(i)*time.Hour))
	}
	put(t, s, plan("live", 1, "9449306753", "LA1"))
	other := plan("other", 1, "9449306753", "LA2")
	put(t, s, other)
	del(other, t0.Add(2*time.Hour))
	org := store.Record{Type: "Organization", ID: "org", Version: 1, Updated: t0, Owner: "LA1", Body: []byte(`{"resourceType":"Organization"}`)}
	put(t, s, org)
	del(org, t0.Add(2*time.Hour))
	// Deleted, then written again: live now.
	again := plan("again", 1, "9449306753", "LA1")
	put(t, s, again)
	del(again, t0.Add(2*time.Hour))
	put(t, s, plan("again", 3, "9449306753", "LA1"))

	got, err := dl.Deleted(ctx, "EpisodeOfCare", "LA1", t0.Add(2*time.Hour), "", 10)
	require.NoError(t, err)
	assert.Equal(t, []string{"d2", "d3", "d4"}, ids(got), "LA1's plans deleted since the time, in id order")
	for _, r := range got {
		assert.True(t, r.Deleted, r.ID)
		assert.Equal(t, int64(3), r.Version, r.ID)
		assert.Equal(t, "LA1", r.Owner)
		assert.Equal(t, "9449306761", r.Subject)
		assert.Equal(t, "EpisodeOfCare", r.Type)
		assert.JSONEq(t, string(plan(r.ID, 2, "", "").Body), string(r.Body), "the body of the version deleted")
	}
	assert.True(t, got[0].Updated.Equal(t0.Add(2*time.Hour)), "Updated is when it was deleted: %v", got[0].Updated)

	page, err := dl.Deleted(ctx, "EpisodeOfCare", "LA1", time.Time{}, "d1", 2)
	require.NoError(t, err)
	assert.Equal(t, []string{"d2", "d3"}, ids(page), "after and limit page")
	none, err := dl.Deleted(ctx, "EpisodeOfCare", "LA3", time.Time{}, "", 10)
	require.NoError(t, err)
	assert.Empty(t, none)
	orgs, err := dl.Deleted(ctx, "Organization", "LA1", time.Time{}, "", 10)
	require.NoError(t, err)
	assert.Equal(t, []string{"org"}, ids(orgs))
	la2, err := dl.Deleted(ctx, "EpisodeOfCare", "LA2", time.Time{}, "", 10)
	require.NoError(t, err)
	assert.Equal(t, []string{"other"}, ids(la2))
}
