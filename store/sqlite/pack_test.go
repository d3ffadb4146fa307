package sqlite

import (
	"bytes"
	"compress/flate"
	"fmt"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestUnpackBodyRoundTrips: bodies of every size, from empty to past the
// scratch buffer's start and its bound, come back byte for byte, whatever
// the previous call left in the scratch buffer; a cut body is an error.
func TestUnpackBodyRoundTrips(t *testing.T) {
	var bodies [][]byte
	for _, n := range []int{0, 1, 100, 4095, 4096, 16 << 10, 16<<10 + 1, 300 << 10, maxUnpackScratch + 1, 3} {
		var sb strings.Builder
		for i := 0; sb.Len() < n; i++ {
			fmt.Fprintf(&sb, `{"resourceType":"AuditEvent","id":"e-%d","recorded":"2026-03-01T09:%02d:00Z"},`, i, i%60)
		}
		bodies = append(bodies, []byte(sb.String()[:n]))
	}
	bodies = append(bodies, auditEventBody(t))
	for _, body := range bodies {
		packed := packBody(body)
		got, err := unpackBody(packed)
		require.NoError(t, err, "%d bytes", len(body))
		require.True(t, bytes.Equal(body, got), "%d bytes", len(body))
		if len(packed) > 1 && packed[0] == packedZstd {
			_, err := unpackBody(packed[:len(packed)/2])
			assert.Error(t, err, "%d bytes cut", len(body))
		}
	}
	// Two bodies unpacked in turn do not share memory.
	a, err := unpackBody(packBody(bodies[3]))
	require.NoError(t, err)
	keep := bytes.Clone(a)
	_, err = unpackBody(packBody(bodies[4]))
	require.NoError(t, err)
	assert.Equal(t, keep, a)
}

// TestUnpackBodyReadsEveryFormat: bodies stored by earlier releases (JSON,
// DEFLATE, DEFLATE against the dictionary) read back as written; what is
// written now is a Zstandard frame against the dictionary, and a frame
// against any other dictionary, or one that says it holds more than a body
// may, is an error, never a body.
func TestUnpackBodyReadsEveryFormat(t *testing.T) {
	body := storedAuditEventBody(t)
	for name, stored := range map[string][]byte{
		"json":         body,
		"deflate":      deflated(t, packedBody, nil, body),
		"deflate+dict": deflated(t, packedDict, dict, body),
		"zstd+dict":    packBody(body),
	} {
		got, err := unpackBody(stored)
		require.NoError(t, err, name)
		assert.Equal(t, string(body), string(got), name)
	}
	packed := packBody(body)
	require.Equal(t, byte(packedZstd), packed[0])
	assert.Less(t, len(packed), len(body)/4, "the dictionary holds most of an AuditEvent")

	other, err := zstd.NewWriter(nil, zstd.WithEncoderDictRaw(auditDictID+1, dict))
	require.NoError(t, err)
	_, err = unpackBody(append([]byte{packedZstd}, other.EncodeAll(body, nil)...))
	assert.Error(t, err, "a frame against another dictionary")

	plain, err := zstd.NewWriter(nil, zstd.WithSingleSegment(true))
	require.NoError(t, err)
	_, err = unpackBody(append([]byte{packedZstd}, plain.EncodeAll(make([]byte, maxPackedBody+1), nil)...))
	assert.Error(t, err, "a frame past the bound")
	big := bytes.Repeat([]byte("x"), maxPackedBody)
	got, err := unpackBody(append([]byte{packedZstd}, plain.EncodeAll(big, nil)...))
	require.NoError(t, err, "a frame at the bound")
	assert.Len(t, got, maxPackedBody)
}

// deflated is body as releases before Zstandard stored it: tag, then a
// DEFLATE stream, against d if it is not nil.
func deflated(t testing.TB, tag byte, d, body []byte) []byte {
	var buf bytes.Buffer
	buf.WriteByte(tag)
	w, err := flate.NewWriterDict(&buf, flate.DefaultCompression, d)
	require.NoError(t, err)
	_, err = w.Write(body)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return buf.Bytes()
}

// BenchmarkUnpackBody: one stored AuditEvent decompressed, as the feed
// page and the access history read each of theirs.
func BenchmarkUnpackBody(b *testing.B) {
	packed := packBody(storedAuditEventBody(b))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := unpackBody(packed); err != nil {
			b.Fatal(err)
		}
	}
}
