// Package mongo is the MongoDB store: one document per resource holding its
// current version, its derived record, its unique keys and its history, so
// that a single-record commit is one atomic document write on any MongoDB
// topology; an access-audit collection ordered by allocated sequence numbers
// for a feed that never skips or repeats.
package mongo

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	mongodrv "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readconcern"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"cpis/store"
)

// Collection names.
const (
	resourcesColl = "resources"
	auditColl     = "audit"
	metaColl      = "meta"
)

// Defaults applied when the connection string does not say otherwise.
const (
	defaultSelectTimeout  = 3 * time.Second
	defaultConnectTimeout = 3 * time.Second
	defaultWriteTimeout   = 15 * time.Second
	defaultHoleGrace      = 10 * time.Second
	defaultAuditWriters   = 2
	maxAuditBatch         = 512
)

// Options tune the backend; the zero value is the production setting.
// Connection settings (pool size, timeouts, TLS, credentials) belong in the
// connection string.
type Options struct {
	// AuditWriters is how many audit group commits may be in flight at once
	// (default 2). Callers that arrive while they are busy share the next one.
	AuditWriters int
	// BatchObserver, if set, is told the number of access records in every
	// audit group commit.
	BatchObserver func(records int)
	// WriteTimeout bounds one audit group commit (default 15s).
	WriteTimeout time.Duration
	// FeedHoleGrace is how long the audit feed waits for an allocated but
	// unwritten sequence number before it fences the number off as abandoned
	// (default 10s). It trades feed latency after a crashed writer against
	// retries by slow writers; it has no bearing on correctness.
	FeedHoleGrace time.Duration
	// Log receives the store's own events (a failed store). Nil discards
	// them.
	Log *slog.Logger
	// MarkerDir, if set, is the data directory holding the store marker
	// (store.MarkerFile): a database that was dropped does not come back
	// empty without the operator saying so (see identity.go).
	MarkerDir string
	// ResetIdentity accepts the database found as the store and rewrites
	// the marker (cpis store init --force).
	ResetIdentity bool
	// WatchInterval is how often the identity is re-read (default 5s).
	WatchInterval time.Duration
}

// Store is the MongoDB backend.
type Store struct {
	client *mongodrv.Client
	db     *mongodrv.Database
	res    *mongodrv.Collection
	audit  *mongodrv.Collection
	meta   *mongodrv.Collection
	opts   Options

	// transactions: the deployment is a replica set or a sharded cluster, so
	// multi-document transactions and causally consistent sessions work.
	transactions bool
	// ferret: the server is FerretDB, whose conditional updates are a read
	// followed by an unconditional write. Writes to one record are then
	// serialised in this process (see lockRecord).
	ferret bool

	clock struct {
		sync.Mutex
		op *bson.Timestamp // the latest operation time this client has seen
	}
	stripes [64]sync.Mutex
	alloc   sync.Mutex // serialises sequence allocation in this process

	holes struct {
		sync.Mutex
		seen map[int64]time.Time // feed sequence numbers found missing, and when
	}

	auditq chan *auditOp
	// closing guards auditq: Audit enqueues under the read lock, Close marks
	// the store closed under the write lock before stopping the writers, so
	// nothing is queued after they drain.
	closing  sync.RWMutex
	isClosed bool
	quit     chan struct{}
	wg       sync.WaitGroup
	closed   sync.Once

	log       *slog.Logger
	id        string
	failure   store.Failure         // set once the store has failed for good
	lastWrite atomic.Pointer[error] // the last refused write, until one succeeds
}

// Open connects to uri, checks the server answers, creates the indexes (an
// idempotent step) and starts the audit writers. An unreachable server gives
// store.ErrUnavailable after the server selection timeout (3s unless the
// connection string sets serverSelectionTimeoutMS).
func Open(ctx context.Context, uri, database string, opts Options) (*Store, error) {
	if database == "" {
		return nil, errors.New("store/mongo: no database name")
	}
	co := options.Client().ApplyURI(uri)
	if co.ServerSelectionTimeout == nil {
		co.SetServerSelectionTimeout(defaultSelectTimeout)
	}
	if co.ConnectTimeout == nil {
		co.SetConnectTimeout(defaultConnectTimeout)
	}
	if co.AppName == nil {
		co.SetAppName("cpis")
	}
	client, err := mongodrv.Connect(co)
	if err != nil {
		// A malformed connection string: configuration, not availability.
		return nil, fmt.Errorf("store/mongo: connection string: %w", err)
	}
	if opts.AuditWriters <= 0 {
		opts.AuditWriters = defaultAuditWriters
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = defaultWriteTimeout
	}
	if opts.FeedHoleGrace <= 0 {
		opts.FeedHoleGrace = defaultHoleGrace
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.WatchInterval <= 0 {
		opts.WatchInterval = defaultWatchInterval
	}
	// Every write waits for a journaled majority, so no acknowledged write is
	// rolled back by a failover; reads see only majority-committed data from
	// the primary, and (on replica sets) are causally after every write this
	// Store has seen (see run). These override the connection string on
	// purpose: they are what the store's guarantees rest on.
	db := client.Database(database, options.Database().
		SetWriteConcern(majority()).
		SetReadConcern(readconcern.Majority()).
		SetReadPreference(readpref.Primary()))
	s := &Store{
		client: client, db: db,
		res: db.Collection(resourcesColl), audit: db.Collection(auditColl), meta: db.Collection(metaColl),
		opts: opts, log: opts.Log,
		auditq: make(chan *auditOp, maxAuditBatch),
		quit:   make(chan struct{}),
	}
	s.holes.seen = map[int64]time.Time{}
	if err := s.detect(ctx); err != nil {
		client.Disconnect(context.Background())
		return nil, err
	}
	if err := s.identify(ctx); err != nil {
		client.Disconnect(context.Background())
		return nil, err
	}
	if err := s.ensureIndexes(ctx); err != nil {
		client.Disconnect(context.Background())
		return nil, err
	}
	if err := s.backfillStart(ctx); err != nil {
		client.Disconnect(context.Background())
		return nil, err
	}
	for i := 0; i < opts.AuditWriters; i++ {
		s.wg.Add(1)
		go s.auditWriter()
	}
	s.wg.Add(1)
	go s.watch()
	return s, nil
}

func majority() *writeconcern.WriteConcern {
	j := true
	return &writeconcern.WriteConcern{W: writeconcern.WCMajority, Journal: &j}
}

// detect asks the server what it is: transactions need a replica set
// (setName) or mongos (msg "isdbgrid"); FerretDB says so in buildInfo.
func (s *Store) detect(ctx context.Context) error {
	var hello struct {
		SetName        string `bson:"setName"`
		Msg            string `bson:"msg"`
		MaxWireVersion int32  `bson:"maxWireVersion"`
	}
	if err := s.db.RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err != nil {
		return s.fail("hello", err)
	}
	// Wire version 8 is MongoDB 4.2, the first with transactions on sharded
	// clusters; replica sets have them since 7 (4.0).
	s.transactions = (hello.SetName != "" && hello.MaxWireVersion >= 7) || (hello.Msg == "isdbgrid" && hello.MaxWireVersion >= 8)
	var info bson.Raw
	if err := s.db.RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&info); err != nil {
		return s.fail("buildInfo", err)
	}
	_, err := info.LookupErr("ferretdbVersion")
	s.ferret = err == nil
	return nil
}

// Transactions reports whether multi-record commits are supported here.
func (s *Store) Transactions() bool { return s.transactions }

// index is one index the store needs; the list is the README's too.
type index struct {
	coll   string
	name   string
	keys   bson.D
	unique bool
	sparse bool
}

// Indexes lists the indexes Open creates, as collection -> names, for tests
// and operators.
func Indexes() map[string][]string {
	out := map[string][]string{}
	for _, ix := range indexes {
		out[ix.coll] = append(out[ix.coll], ix.name)
	}
	return out
}

var indexes = []index{
	// Unique identifier keys of live records. Each element is "type|key".
	// Tombstones and keyless records have no keys field at all and the index
	// is sparse, so they never collide (an empty array or null would).
	{coll: resourcesColl, name: "keys_unique", keys: bson.D{{Key: "keys", Value: 1}}, unique: true, sparse: true},
	// The hot path: a patient's Flags (or plans), in id order.
	{coll: resourcesColl, name: "subject_types_id", keys: bson.D{{Key: "subject", Value: 1}, {Key: "types", Value: 1}, {Key: "id", Value: 1}}},
	// An LA's records, in id order.
	{coll: resourcesColl, name: "owner_types_id", keys: bson.D{{Key: "owner", Value: 1}, {Key: "types", Value: 1}, {Key: "id", Value: 1}}},
	// Records of a type by id: derived-record reads, id lists, plain listing.
	{coll: resourcesColl, name: "types_id", keys: bson.D{{Key: "types", Value: 1}, {Key: "id", Value: 1}}},
	// Retention purge.
	{coll: resourcesColl, name: "end", keys: bson.D{{Key: "end", Value: 1}}},
	// What changed since: an LA's records by time (_lastUpdated, _sort) and
	// its versions of a type by time (the type-level _history).
	{coll: resourcesColl, name: "owner_types_updated_id", keys: bson.D{{Key: "owner", Value: 1}, {Key: "types", Value: 1}, {Key: "updated", Value: 1}, {Key: "id", Value: 1}}},
	{coll: resourcesColl, name: "history_owner_type_updated", keys: bson.D{{Key: "history.owner", Value: 1}, {Key: "type", Value: 1}, {Key: "history.updated", Value: 1}}},
	// An LA's deleted records (store.DeletedLister), in id order.
	{coll: resourcesColl, name: "owner_deleted_id", keys: bson.D{{Key: "owner", Value: 1}, {Key: "deleted", Value: 1}, {Key: "id", Value: 1}}},
	// _sort=date: an LA's records by period start (those with none, null,
	// by id); and the plans not yet given a start, which Open looks for.
	{coll: resourcesColl, name: "owner_types_start_id", keys: bson.D{{Key: "owner", Value: 1}, {Key: "types", Value: 1}, {Key: "start", Value: 1}, {Key: "id", Value: 1}}},
	{coll: resourcesColl, name: "types_start", keys: bson.D{{Key: "types", Value: 1}, {Key: "start", Value: 1}}},

	// Caller-assigned access record ids are unique; fence markers have none.
	{coll: auditColl, name: "id_unique", keys: bson.D{{Key: "id", Value: 1}}, unique: true, sparse: true},
	// The hot path: a patient's access history, oldest first.
	{coll: auditColl, name: "subject_recorded", keys: bson.D{{Key: "subject", Value: 1}, {Key: "recorded", Value: 1}, {Key: "_id", Value: 1}}},
	// An LA's feed in sequence order.
	{coll: auditColl, name: "owners_seq", keys: bson.D{{Key: "owners", Value: 1}, {Key: "_id", Value: 1}}},
	// An LA's feed by time: the feed's total (a week of it) and where a page
	// from a date starts are read from the week's index entries, not from
	// the authority's whole feed on owners_seq.
	{coll: auditColl, name: "owners_notify_recorded", keys: bson.D{{Key: "owners", Value: 1}, {Key: "notify", Value: 1}, {Key: "recorded", Value: 1}, {Key: "_id", Value: 1}}},
	// Retention purge.
	{coll: auditColl, name: "recorded", keys: bson.D{{Key: "recorded", Value: 1}}},
}

func (s *Store) ensureIndexes(ctx context.Context) error {
	// Only missing indexes are created, one per command: FerretDB v1.24
	// panics on a createIndexes naming several indexes that already exist.
	have := map[string]map[string]bool{}
	for _, coll := range []string{resourcesColl, auditColl} {
		specs, err := s.db.Collection(coll).Indexes().ListSpecifications(ctx)
		if err != nil {
			return s.fail("listing indexes on "+coll, err)
		}
		have[coll] = map[string]bool{}
		for _, sp := range specs {
			have[coll][sp.Name] = true
		}
	}
	for _, ix := range indexes {
		if have[ix.coll][ix.name] {
			continue
		}
		o := options.Index().SetName(ix.name)
		if ix.unique {
			o.SetUnique(true)
		}
		if ix.sparse {
			o.SetSparse(true)
		}
		if _, err := s.db.Collection(ix.coll).Indexes().CreateOne(ctx, mongodrv.IndexModel{Keys: ix.keys, Options: o}); err != nil {
			return s.fail("creating index "+ix.coll+"."+ix.name, err)
		}
	}
	// The sequence counter exists before anyone allocates from it.
	_, err := s.meta.UpdateOne(ctx, bson.D{{Key: "_id", Value: seqCounter}},
		bson.D{{Key: "$setOnInsert", Value: bson.D{{Key: "seq", Value: int64(0)}}}}, options.UpdateOne().SetUpsert(true))
	if err != nil && !mongodrv.IsDuplicateKeyError(err) { // two processes opening at once
		return s.fail("creating the sequence counter", err)
	}
	return nil
}

// Close stops the audit writers after the queued records and disconnects.
func (s *Store) Close() error {
	var err error
	s.closed.Do(func() {
		s.closing.Lock()
		s.isClosed = true
		s.closing.Unlock()
		close(s.quit)
		s.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = s.client.Disconnect(ctx)
	})
	return err
}

// Ping checks the store has not failed and the primary answers; after a
// refused write, it also needs a probe write to succeed.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.broken(); err != nil {
		return err
	}
	select {
	case <-s.quit:
		return fmt.Errorf("store/mongo: ping: %w: closed", store.ErrUnavailable)
	default:
	}
	if err := s.client.Ping(ctx, readpref.Primary()); err != nil {
		return s.fail("ping", err)
	}
	if s.lastWrite.Load() != nil {
		err := s.probe(ctx)
		s.noteWrite(ctx, err)
		if err != nil {
			return fmt.Errorf("store/mongo: ping: writes are refused: %w", err)
		}
	}
	return nil
}

// fail wraps an unexpected database error. Every one of them means the
// store could not do its job (no server, a timeout, a failover, a refused
// command) and the caller answers 503; the driver's error is kept only inside
// ours, for the log and for errors.As.
func (s *Store) fail(op string, err error) error {
	return fmt.Errorf("store/mongo: %s: %w: %w", op, store.ErrUnavailable, err)
}

// run calls fn with a context that carries a causally consistent session on
// replica sets and sharded clusters, advanced to the latest operation time
// this Store has seen. So a read that follows an acknowledged write by this
// process sees it, even when a new primary has been elected in between and
// its majority snapshot still lags. Standalone servers and FerretDB have one
// node and need no session.
func (s *Store) run(ctx context.Context, fn func(ctx context.Context) error) error {
	if !s.transactions {
		return fn(ctx)
	}
	sess, err := s.client.StartSession(options.Session().SetCausalConsistency(true))
	if err != nil {
		return s.fail("starting a session", err)
	}
	defer sess.EndSession(context.WithoutCancel(ctx))
	s.clock.Lock()
	if s.clock.op != nil {
		_ = sess.AdvanceOperationTime(s.clock.op)
	}
	s.clock.Unlock()
	err = fn(mongodrv.NewSessionContext(ctx, sess))
	if t := sess.OperationTime(); t != nil {
		s.clock.Lock()
		if s.clock.op == nil || t.After(*s.clock.op) {
			c := *t
			s.clock.op = &c
		}
		s.clock.Unlock()
	}
	return err
}

// lockRecord serialises writes to one record within this process when the
// server is FerretDB (see Store.ferret); on MongoDB it does nothing, as the
// conditional write itself is atomic.
func (s *Store) lockRecord(key string) func() {
	if !s.ferret {
		return func() {}
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	m := &s.stripes[h.Sum32()%uint32(len(s.stripes))]
	m.Lock()
	return m.Unlock
}

// isDuplicate reports a unique index violation. FerretDB's SQLite handler
// reports one raised by an update as an internal error naming the SQLite
// constraint rather than as code 11000.
func isDuplicate(err error) bool {
	if mongodrv.IsDuplicateKeyError(err) {
		return true
	}
	var se mongodrv.ServerError
	return errors.As(err, &se) && se.HasErrorMessage("UNIQUE constraint failed")
}
