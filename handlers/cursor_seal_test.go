package handlers

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/auth"
)

// A sealed cursor's plain text is exactly json.Marshal's (cursors sealed
// before this encoder, under the same kept key, still open), for every
// string a search can carry, and a sealed cursor opens to what was sealed.
func FuzzCursorSealsAsJSON(f *testing.F) {
	f.Add("user|555|5552|RBA", "Flag", "patient:identifier=https://fhir.nhs.uk/Id/nhs-number|9449306753&_count=10", "k1", int64(1767225600))
	f.Add("system|a\"b\\c|LA\u2028", "Episode<Of>Care", "x=\x00\x1f&y=\xff\xfe", "", int64(-1))
	f.Fuzz(func(t *testing.T, caller, typ, query, store string, exp int64) {
		pc := pageCursor{Caller: caller, Type: typ, Query: query, Store: store, Expires: exp}
		want, err := json.Marshal(pc)
		require.NoError(t, err)
		// encoding/json escapes <, > and & for HTML; both read back alike.
		var a, b pageCursor
		require.NoError(t, json.Unmarshal(want, &a))
		require.NoError(t, json.Unmarshal(pc.appendJSON(nil), &b), "%s", pc.appendJSON(nil))
		assert.Equal(t, a, b)
	})
}

func TestSealedCursorOpens(t *testing.T) {
	s, err := newSealer(nil)
	require.NoError(t, err)
	p := &auth.Principal{Kind: auth.User, UserID: "555", RoleID: "5552", OrgCode: "RBA"}
	now := time.Unix(1767225600, 0)
	pc := pageCursor{Caller: callerID(p), Type: "Flag", Query: "patient:identifier=…|9449306753", Store: "c1", Expires: now.Add(time.Hour).Unix()}
	a, b := s.seal(pc), s.seal(pc)
	assert.NotEqual(t, a, b, "a fresh nonce each time")
	got, err := s.open(a, p, "Flag", now)
	require.NoError(t, err)
	assert.Equal(t, pc, got)
	_, err = s.open(a, &auth.Principal{Kind: auth.User, UserID: "556", RoleID: "5552", OrgCode: "RBA"}, "Flag", now)
	assert.Error(t, err, "another caller")
	_, err = s.open(a, p, "Flag", now.Add(2*time.Hour))
	assert.Error(t, err, "expired")
}
