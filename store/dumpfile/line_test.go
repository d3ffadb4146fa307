package dumpfile

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
)

// Bodies round-trip byte for byte whatever they hold: compact JSON with
// HTML in it (a narrative), JSON with white space, bytes that are not JSON.
func TestLinesKeepBodiesExactly(t *testing.T) {
	at := time.Date(2026, 3, 1, 9, 30, 0, 123456789, time.UTC)
	bodies := [][]byte{
		[]byte(`{"resourceType":"EpisodeOfCare","text":{"div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">a &amp; b</div>"},"x":"\u003c"}`),
		[]byte("{\"resourceType\": \"Flag\",\n \"id\": \"p1\"}"),
		{0x01, 0xff, 0x00, '{'},
		nil,
	}
	for _, b := range bodies {
		it := store.Item{Versions: []store.Record{
			{Type: "EpisodeOfCare", ID: "p1", Version: 1, Updated: at, Owner: "LA1", Subject: "9449306753", Body: b,
				End: at.Add(time.Hour), Ends: at.Add(time.Minute), Derived: &store.Derived{Type: "Flag", Body: b, Ends: at}},
			{Type: "EpisodeOfCare", ID: "p1", Version: 2, Updated: at.Add(time.Second), Owner: "LA1", Subject: "9449306753", Body: b,
				Keys: []string{"LA1|s|b", "LA1|s|a"}},
		}}
		line, typ, isAudit, err := encode(it)
		require.NoError(t, err)
		assert.Equal(t, "EpisodeOfCare", typ)
		assert.False(t, isAudit)
		got, err := decodeRecord(line)
		require.NoError(t, err)
		it.Versions[1].Keys = []string{"LA1|s|a", "LA1|s|b"} // kept as a set, sorted
		assert.Equal(t, it, got)

		a := store.Item{Seq: 7, Audit: &store.AuditRecord{Seq: 7, ID: "e1", Recorded: at, Subject: "9449306753", Owners: []string{"LA2", "LA1"},
			Agent: "u1", Notify: true, Body: b, Views: map[string][]byte{"LA1": b, "LA2": []byte(`{"v":2}`)}}}
		line, typ, isAudit, err = encode(a)
		require.NoError(t, err)
		assert.Equal(t, auditType, typ)
		assert.True(t, isAudit)
		got, err = decodeAudit(line)
		require.NoError(t, err)
		a.Audit.Owners = []string{"LA1", "LA2"}
		assert.Equal(t, a, got)
	}
}

// A line that is not a record is refused with where it is.
func TestDecodeRefusesBadLines(t *testing.T) {
	for _, line := range []string{`{}`, `{"type":"Flag","id":"x","versions":[]}`, `not json`, `{"type":"Flag","id":"x","versions":[{"version":1,"updated":"yesterday"}]}`} {
		_, err := decodeRecord([]byte(line))
		assert.Error(t, err, line)
	}
	for _, line := range []string{`{}`, `{"seq":0,"id":"e"}`, `{"seq":1}`} {
		_, err := decodeAudit([]byte(line))
		assert.Error(t, err, line)
	}
}
