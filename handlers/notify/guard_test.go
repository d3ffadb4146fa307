package notify

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A subscription endpoint must not make the server call the cloud's
// metadata service or the private network: the dialer refuses those
// addresses before connecting, whatever the name resolved to.
func TestHazard_EndpointReachesTheInternalNetwork(t *testing.T) {
	c := guardedClient(nil)
	for _, u := range []string{
		"http://169.254.169.254/latest/meta-data/",
		"http://10.0.0.1:8080/admin",
		"http://192.168.1.1/",
		"http://[fd00::1]/",
		"http://100.64.0.1/",
		"http://0.0.0.0:9/",
	} {
		_, err := c.Get(u)
		require.Error(t, err, u)
		assert.True(t, errors.Is(err, errInternalAddress), "%s: %v", u, err)
	}

	// Loopback (development receivers) is reached.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	defer srv.Close()
	r, err := c.Get(srv.URL)
	require.NoError(t, err)
	r.Body.Close()
	assert.Equal(t, 204, r.StatusCode)

	// No redirects: a public endpoint cannot bounce the server inward.
	redir := httptest.NewServer(http.RedirectHandler("http://169.254.169.254/", http.StatusFound))
	defer redir.Close()
	r, err = c.Get(redir.URL)
	require.NoError(t, err)
	r.Body.Close()
	assert.Equal(t, http.StatusFound, r.StatusCode)
}

func TestInternalHostsList(t *testing.T) {
	list := []string{"receiver.la001.internal", ".la002.local"}
	assert.True(t, listedHost(list, "receiver.la001.internal"))
	assert.True(t, listedHost(list, "RECEIVER.la001.internal."))
	assert.True(t, listedHost(list, "hooks.la002.local"))
	assert.False(t, listedHost(list, "la002.local.evil.example"))
	assert.False(t, listedHost(list, "other.la001.internal"))
	assert.False(t, listedHost(nil, "anything"))
	assert.True(t, listedHost([]string{"*"}, "anything"))

	assert.True(t, literalInternal(nil, "169.254.169.254"))
	assert.True(t, literalInternal(nil, "10.1.2.3"))
	assert.False(t, literalInternal([]string{"10.1.2.3"}, "10.1.2.3"))
	assert.False(t, literalInternal(nil, "127.0.0.1"), "loopback is for development receivers")
	assert.False(t, literalInternal(nil, "hooks.example.org"), "names are checked when dialled")
	assert.False(t, internalAddress(net.ParseIP("8.8.8.8")))
}

// A delivery the guard refused says so in the subscription's error (what
// $status shows), without the endpoint's address.
func TestRefusedEndpointSaysWhy(t *testing.T) {
	s := &Service{cfg: Config{Client: guardedClient(nil), AttemptTimeout: time.Second, PerEndpoint: 1}, sems: map[string]chan struct{}{}}
	err := s.post(context.Background(), channel{Endpoint: "https://169.254.169.254/hook?token=secret"}, []byte("{}"), "event-notification")
	require.Error(t, err)
	assert.ErrorIs(t, err, errInternalAddress)
	assert.NotContains(t, err.Error(), "169.254")
	assert.NotContains(t, err.Error(), "secret")
}
