package load

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGoClientAsksForGzipOnlyWhenTold: the Go load client sends no
// Accept-Encoding, as wrk does not, so both measure the same server work;
// --gzip asks for it.
func TestGoClientAsksForGzipOnlyWhenTold(t *testing.T) {
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("Accept-Encoding")
	}))
	defer srv.Close()
	for _, gz := range []bool{false, true} {
		b := &benchRun{o: BenchOptions{Concurrency: 1, Gzip: gz}}
		b.client = newClient(b.o)
		status, _, err := b.do(t.Context(), http.MethodGet, srv.URL, "t", nil, "")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, status)
		if gz {
			assert.Equal(t, "gzip", <-got)
		} else {
			assert.Empty(t, <-got, "no Accept-Encoding unless told")
		}
	}
}
