package sqlite

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

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
		if len(packed) > 1 && packed[0] == packedDict {
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

// BenchmarkUnpackBody: one stored AuditEvent decompressed, as the feed
// page and the access history read each of theirs.
func BenchmarkUnpackBody(b *testing.B) {
	packed := packBody(auditEventBody(b))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := unpackBody(packed); err != nil {
			b.Fatal(err)
		}
	}
}
