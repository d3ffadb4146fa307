// Package sqlite is the embedded store: one SQLite database file in the data
// directory, written through a single group-committing writer so that many
// concurrent durable writes share one fsync.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"cpis/store"
)

// FileName is the database file inside the data directory.
const FileName = "cpis.db"

// maxBatch bounds how many queued write operations share one commit.
const maxBatch = 256

// Options tune the backend; the zero value is the production setting.
type Options struct {
	// Readers is the size of the read connection pool (default 2×GOMAXPROCS).
	Readers int
	// BatchObserver, if set, is told the size of every group commit.
	BatchObserver func(ops int)
}

// Store is the SQLite backend.
type Store struct {
	path   string
	w      *sql.DB // one connection, used only by the writer goroutine
	wstmts map[string]*sql.Stmt
	r      *sql.DB // read pool
	ops    chan *op
	quit   chan struct{}
	done   chan struct{}
	// checkpointDone closes when the checkpointer has stopped.
	checkpointDone chan struct{}
	opts           Options
	stmts          sync.Map // SQL text -> *sql.Stmt on r
	nstmts         atomic.Int64
	closed         sync.Once
}

type op struct {
	ctx  context.Context
	fn   func(ctx context.Context, tx *writeTx) error
	done chan error
}

// writeTx is the writer's transaction, running the writer's statements
// prepared once at Open.
type writeTx struct {
	tx    *sql.Tx
	stmts map[string]*sql.Stmt
}

func (w *writeTx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if st, ok := w.stmts[q]; ok {
		return w.tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return w.tx.ExecContext(ctx, q, args...)
}

func (w *writeTx) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	if st, ok := w.stmts[q]; ok {
		return w.tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return w.tx.QueryRowContext(ctx, q, args...)
}

func (w *writeTx) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return w.tx.QueryContext(ctx, q, args...)
}

// Open opens (creating if needed) the database in dir.
func Open(dir string, opts Options) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store/sqlite: creating data dir: %w", err)
	}
	path := filepath.Join(dir, FileName)
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)&_pragma=temp_store(MEMORY)&_pragma=wal_autocheckpoint(0)&_txlock=immediate"
	w, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store/sqlite: open: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	if err := migrate(w); err != nil {
		w.Close()
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		w.Close()
		return nil, fmt.Errorf("store/sqlite: %w", err)
	}
	r, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("store/sqlite: open readers: %w", err)
	}
	n := opts.Readers
	if n <= 0 {
		n = 2 * runtime.GOMAXPROCS(0)
	}
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	r.SetConnMaxLifetime(0)
	wstmts := map[string]*sql.Stmt{}
	for _, q := range writerStatements() {
		st, err := w.Prepare(q)
		if err != nil {
			w.Close()
			r.Close()
			return nil, fmt.Errorf("store/sqlite: preparing the writer's statements: %w", err)
		}
		wstmts[q] = st
	}
	s := &Store{path: path, w: w, wstmts: wstmts, r: r, ops: make(chan *op, maxBatch), quit: make(chan struct{}), done: make(chan struct{}), checkpointDone: make(chan struct{}), opts: opts}
	go s.writer()
	go s.checkpointer()
	return s, nil
}

// Close stops the writer after the queued operations and closes the database.
func (s *Store) Close() error {
	var err error
	s.closed.Do(func() {
		close(s.quit)
		<-s.done
		<-s.checkpointDone
		s.stmts.Range(func(_, v any) bool { v.(*sql.Stmt).Close(); return true })
		for _, st := range s.wstmts {
			st.Close()
		}
		err = errors.Join(s.r.Close(), s.w.Close())
	})
	return err
}

// Ping checks both pools answer.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.r.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("store/sqlite: ping: %w: %v", store.ErrUnavailable, err)
	}
	select {
	case <-s.quit:
		return fmt.Errorf("store/sqlite: ping: %w: closed", store.ErrUnavailable)
	default:
	}
	return nil
}

// checkpointInterval is how often the WAL is copied back into the database.
const checkpointInterval = time.Second

// checkpointer copies the write-ahead log into the database file in the
// background (PASSIVE: it never blocks the writer or readers), so commits
// on the writer never pay for a checkpoint.
func (s *Store) checkpointer() {
	defer close(s.checkpointDone)
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
			// A busy or failing checkpoint is tried again next time; the WAL
			// just grows meanwhile, and every commit in it is durable.
			_, _ = s.r.Exec(`PRAGMA wal_checkpoint(PASSIVE)`)
		}
	}
}

// write queues fn to run in the next group commit and waits for the commit.
func (s *Store) write(ctx context.Context, fn func(ctx context.Context, tx *writeTx) error) error {
	o := &op{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case s.ops <- o:
	case <-s.quit:
		return fmt.Errorf("store/sqlite: %w: closed", store.ErrUnavailable)
	case <-ctx.Done():
		return fmt.Errorf("store/sqlite: %w: %v", store.ErrUnavailable, ctx.Err())
	}
	// Once queued, wait for the outcome: the caller must know whether the
	// write is durable.
	return <-o.done
}

// writer runs queued operations in batches: each in its own savepoint, all
// in one transaction, so a batch costs one fsync.
func (s *Store) writer() {
	defer close(s.done)
	batch := make([]*op, 0, maxBatch)
	for {
		select {
		case o := <-s.ops:
			batch = append(batch[:0], o)
		case <-s.quit:
			// Drain what was queued before Close.
			for {
				select {
				case o := <-s.ops:
					s.commit([]*op{o})
				default:
					return
				}
			}
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case o := <-s.ops:
				batch = append(batch, o)
			default:
				break fill
			}
		}
		s.commit(batch)
	}
}

func (s *Store) commit(batch []*op) {
	if s.opts.BatchObserver != nil {
		s.opts.BatchObserver(len(batch))
	}
	live := batch[:0:0]
	for _, o := range batch {
		if err := o.ctx.Err(); err != nil {
			o.done <- fmt.Errorf("store/sqlite: %w: %v", store.ErrUnavailable, err)
			continue
		}
		live = append(live, o)
	}
	if len(live) == 0 {
		return
	}
	// Most batches succeed whole: run them without a savepoint per
	// operation. If one operation fails, the transaction is rolled back and
	// the batch runs again with savepoints, so the others still commit
	// together and the failed one leaves nothing.
	errs, err := s.run(live, len(live) == 1)
	if err == errOpFailed {
		errs, err = s.run(live, true)
	}
	for i, o := range live {
		switch {
		case err != nil:
			o.done <- fmt.Errorf("store/sqlite: %w: %v", store.ErrUnavailable, err)
		default:
			o.done <- errs[i]
		}
	}
}

// errOpFailed says an operation failed in a batch run without savepoints.
var errOpFailed = errors.New("store/sqlite: an operation failed")

// run applies ops in one transaction. With isolate, each runs in a savepoint
// and a failure is that operation's alone; without, the first failure rolls
// back everything and run returns errOpFailed (unless it is the only op,
// whose own error it then returns).
func (s *Store) run(ops []*op, isolate bool) ([]error, error) {
	ctx := context.Background()
	errs := make([]error, len(ops))
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	w := &writeTx{tx: tx, stmts: s.wstmts}
	for i, o := range ops {
		if isolate {
			if _, err := w.exec(ctx, `SAVEPOINT op`); err != nil {
				tx.Rollback()
				return nil, err
			}
		}
		errs[i] = o.fn(ctx, w)
		switch {
		case errs[i] != nil && !isolate:
			tx.Rollback()
			return nil, errOpFailed
		case errs[i] != nil:
			if _, err := w.exec(ctx, `ROLLBACK TO op`); err != nil {
				tx.Rollback()
				return nil, err
			}
		}
		if isolate {
			if _, err := w.exec(ctx, `RELEASE op`); err != nil {
				tx.Rollback()
				return nil, err
			}
		}
	}
	if len(ops) == 1 && errs[0] != nil {
		// A lone failed operation: nothing to commit.
		if err := tx.Rollback(); err != nil {
			return nil, err
		}
		return errs, nil
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	return errs, nil
}

// maxStmts bounds the prepared statements kept. Query texts vary with the
// page size and the number of ids a client asks for, so a client must not
// be able to make the server keep one statement per variant.
const maxStmts = 512

// stmt returns a prepared statement on the read pool, preparing it once, or
// nil once the cache is full and q is not in it.
func (s *Store) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := s.stmts.Load(q); ok {
		return st.(*sql.Stmt), nil
	}
	if s.nstmts.Load() >= maxStmts {
		return nil, nil
	}
	st, err := s.r.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if prev, loaded := s.stmts.LoadOrStore(q, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	s.nstmts.Add(1)
	return st, nil
}

func (s *Store) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	st, err := s.stmt(ctx, q)
	if err != nil {
		return nil, unavailable(err)
	}
	if st == nil {
		rows, err := s.r.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, unavailable(err)
		}
		return rows, nil
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, unavailable(err)
	}
	return rows, nil
}

func unavailable(err error) error {
	return fmt.Errorf("store/sqlite: %w: %v", store.ErrUnavailable, err)
}

func isConstraint(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
}

func nanos(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

func fromNanos(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
