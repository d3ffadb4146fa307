package mongo

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	mongodrv "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"cpis/store"
	"cpis/store/mongo/mongotest"
	"cpis/store/storetest"
)

// envURI names a real MongoDB to run the suite against as well.
const envURI = mongotest.EnvURI

// ferretReason is why the suite expects multi-record commits to be refused.
const ferretReason = "FerretDB v1.24 (SQLite handler) has no multi-document transactions: it rejects startTransaction, " +
	"so the store refuses multi-record commits as it does on a standalone mongod"

// ferret is the FerretDB server shared by the package's tests; each test
// uses a database of its own.
var ferret *mongotest.Server

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cpis-ferretdb-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ferret, err = mongotest.Start(dir, "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting FerretDB:", err)
		os.Exit(1)
	}
	code := m.Run()
	ferret.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freshDB names a database no other test uses.
func freshDB() string { return mongotest.FreshDB() }

// backend is a server the tests run against.
type backend struct {
	name   string
	uri    string
	ferret bool
}

func backends(t *testing.T) []backend {
	b := []backend{{name: "ferretdb", uri: ferret.URI, ferret: true}}
	if uri := os.Getenv(envURI); uri != "" {
		b = append(b, backend{name: "mongodb", uri: uri})
	} else {
		t.Logf("%s is not set: running against the embedded FerretDB only", envURI)
	}
	return b
}

// open opens a store on a fresh database of b, closed (and on MongoDB
// dropped) when the test ends.
func open(t testing.TB, b backend, opts Options) (*Store, string) {
	t.Helper()
	name := freshDB()
	s, err := Open(context.Background(), b.uri, name, opts)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	if !b.ferret {
		t.Cleanup(func() { dropDB(t, b.uri, name) })
	}
	return s, name
}

func dropDB(t testing.TB, uri, name string) {
	c, err := mongodrv.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Logf("dropping %s: %v", name, err)
		return
	}
	defer c.Disconnect(context.Background())
	if err := c.Database(name).Drop(context.Background()); err != nil {
		t.Logf("dropping %s: %v", name, err)
	}
}

func TestConformanceFerretDB(t *testing.T) {
	runSuite(t, backend{name: "ferretdb", uri: ferret.URI, ferret: true})
}

func TestConformanceMongoDB(t *testing.T) {
	uri := os.Getenv(envURI)
	if uri == "" {
		t.Skipf("%s is not set; set it to a MongoDB connection string (a replica set, to cover transactions) to run the suite there", envURI)
	}
	runSuite(t, backend{name: "mongodb", uri: uri})
}

func runSuite(t *testing.T, b backend) {
	names := map[store.Store]string{}
	h := storetest.Harness{
		Open: func(t *testing.T) store.Store {
			name := freshDB()
			s, err := Open(context.Background(), b.uri, name, Options{})
			require.NoError(t, err)
			names[s] = name
			if !b.ferret {
				t.Cleanup(func() { dropDB(t, b.uri, name) })
			}
			return s
		},
		Reopen: func(t *testing.T, s store.Store) store.Store {
			name := names[s]
			require.NoError(t, s.Close())
			s2, err := Open(context.Background(), b.uri, name, Options{})
			require.NoError(t, err)
			return s2
		},
	}
	probe, _ := open(t, b, Options{})
	if !probe.Transactions() {
		h.NoTransactions = true
		h.Reason = ferretReason
		if !b.ferret {
			h.Reason = "the server is a standalone mongod, which has no multi-document transactions (use a replica set)"
		}
	}
	if probe.ferret {
		t.Log("FerretDB runs a conditional update as a read followed by an unconditional write, " +
			"so the store serialises writes to one record within the process there; " +
			"the concurrency tests check that path, not MongoDB's atomic conditional update")
	}
	probe.Close()
	storetest.Run(t, h)
}
