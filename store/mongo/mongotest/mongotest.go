// Package mongotest starts FerretDB (SQLite handler) inside a test process,
// so the MongoDB backend and the tests above it run against a real
// MongoDB-wire server on a loopback port, and names the real MongoDB given by
// CPIS_TEST_MONGODB_URI when it is set.
package mongotest

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"sync/atomic"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// EnvURI names a real MongoDB that tests run against as well.
const EnvURI = "CPIS_TEST_MONGODB_URI"

// Server is an embedded FerretDB.
type Server struct {
	URI    string
	Addr   string // host:port it listens on
	Dir    string
	cancel context.CancelFunc
	done   chan struct{}
}

// Start runs FerretDB with its SQLite handler storing in dir, listening on
// addr ("127.0.0.1:0" for a free port).
func Start(dir, addr string) (*Server, error) {
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: addr},
		Handler:   "sqlite",
		SQLiteURL: "file:" + dir + "/",
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(ctx)
	}()
	uri := f.MongoDBURI() // waits for the listener
	u, err := url.Parse(uri)
	if err != nil {
		cancel()
		<-done
		return nil, err
	}
	return &Server{URI: uri, Addr: u.Host, Dir: dir, cancel: cancel, done: done}, nil
}

// Stop closes the listener and every connection, and waits.
func (s *Server) Stop() {
	s.cancel()
	<-s.done
}

var dbSeq atomic.Int64

// FreshDB names a database no other test in this process uses.
func FreshDB() string {
	return fmt.Sprintf("cpis_t%d_%d", os.Getpid(), dbSeq.Add(1))
}
