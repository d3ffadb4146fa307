package mongo

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
	"cpis/store/mongo/mongotest"
)

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

func TestOpenUnreachableIsUnavailable(t *testing.T) {
	addr := closedPort(t)
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		// No timeouts in the URI: the store's defaults must apply.
		s, err := Open(context.Background(), "mongodb://"+addr+"/", freshDB(), Options{})
		if err == nil {
			s.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		require.ErrorIs(t, err, store.ErrUnavailable)
		t.Logf("Open against closed port %s: ErrUnavailable after %v (store default server selection timeout %v; the driver's own default is 30s)",
			addr, time.Since(start).Round(time.Millisecond), defaultSelectTimeout)
	case <-time.After(25 * time.Second):
		t.Fatal("Open against a closed port has not given up after 25s: the server selection timeout default is not applied")
	}
}

func TestRecoversWhenServerReturns(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	f, err := mongotest.Start(dir, "127.0.0.1:0")
	require.NoError(t, err)
	addr := f.Addr
	s, err := Open(ctx, "mongodb://"+addr+"/?serverSelectionTimeoutMS=500", "cpis_recovery", Options{})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	p := plan("p1", 1, "9449306753", "LA1", "https://la1.example/id|A1")
	require.NoError(t, s.Commit(ctx, []store.Write{{Record: p}}))
	require.NoError(t, s.Audit(ctx, []store.AuditRecord{audit("e1", t0, "9449306753", "u1", true, "LA1")}))

	f.Stop()
	down := time.Now()
	_, err = s.Get(ctx, "EpisodeOfCare", "p1")
	assert.ErrorIs(t, err, store.ErrUnavailable, "get while down")
	assert.ErrorIs(t, s.Audit(ctx, []store.AuditRecord{audit("e2", t0, "9449306753", "u1", true, "LA1")}), store.ErrUnavailable, "audit while down")
	_, _, err = s.Search(ctx, store.Query{Type: "Flag", Subject: "9449306753", Limit: 10})
	assert.ErrorIs(t, err, store.ErrUnavailable, "search while down")
	assert.ErrorIs(t, s.Ping(ctx), store.ErrUnavailable, "ping while down")

	// The same server comes back on the same port with the same data.
	for i := 0; ; i++ {
		f, err = mongotest.Start(dir, addr)
		// FerretDB formats the listen error with %s, so look at the text.
		if err == nil || !strings.Contains(err.Error(), "address already in use") || i == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.NoError(t, err)
	t.Cleanup(func() {
		s.Close() // first: FerretDB waits about 3s for open connections when it stops
		f.Stop()
	})
	back := time.Now()
	t.Logf("four operations while the server was down took %v", back.Sub(down).Round(time.Millisecond))
	require.Eventually(t, func() bool { return s.Ping(ctx) == nil }, 20*time.Second, 50*time.Millisecond, "ping after the server returned")
	t.Logf("the store answered again %v after the server came back", time.Since(back).Round(time.Millisecond))
	got, err := s.Get(ctx, "EpisodeOfCare", "p1")
	require.NoError(t, err)
	assert.Equal(t, int64(1), got.Version)
	require.NoError(t, s.Audit(ctx, []store.AuditRecord{audit("e3", t0.Add(time.Minute), "9449306753", "u1", true, "LA1")}))
	recs, err := s.AuditBySubject(ctx, "9449306753", time.Time{}, 1000)
	require.NoError(t, err)
	assert.Equal(t, []string{"e1", "e3"}, auditIDs(recs), "the refused record was not stored; the others were")
	require.NoError(t, s.Commit(ctx, []store.Write{{Record: plan("p1", 2, "9449306753", "LA1"), Expect: 1}}))
}

func TestClosedStoreIsUnavailable(t *testing.T) {
	s, _ := open(t, backend{name: "ferretdb", uri: ferret.URI, ferret: true}, Options{})
	require.NoError(t, s.Close())
	assert.ErrorIs(t, s.Audit(context.Background(), []store.AuditRecord{audit("e1", t0, "9449306753", "u1", true, "LA1")}), store.ErrUnavailable)
	assert.ErrorIs(t, s.Ping(context.Background()), store.ErrUnavailable)
}
