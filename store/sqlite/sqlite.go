// Package sqlite is the embedded store: one SQLite database file in the data
// directory, written through a single group-committing writer so that many
// concurrent durable writes share one fsync.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
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
	// Log receives the store's own events: a failed store, the start-up
	// check. Nil discards them.
	Log *slog.Logger
	// ResetIdentity accepts the database found (missing, empty or another
	// store's) as this data directory's store and rewrites the marker: the
	// operator's explicit `cpis store init --force`.
	ResetIdentity bool
	// WatchInterval is how often the database file is checked for being
	// deleted, replaced or made unwritable (default 2s).
	WatchInterval time.Duration
	// CheckTimeout bounds the integrity check at Open (default 20s); the
	// check stops there and says so. Negative skips it.
	CheckTimeout time.Duration
	// WALLimit bounds the write-ahead log (default 256 MiB): past it, the
	// writer has SQLite restart the log (see boundWAL).
	WALLimit int64
	// BusyTimeout is how long a connection waits for a lock another
	// process holds on the database (default 10s).
	BusyTimeout time.Duration
	// NoPlanIndex answers every search through SQL, without the in-memory
	// plan index (see planindex.go).
	NoPlanIndex bool
	// PlanIndexBodies bounds the bytes of derived bodies (Flags) the plan
	// index holds (default 8 MiB; negative: none, each read by primary key).
	PlanIndexBodies int64
	// PlanIndexSubjects bounds the NHS numbers the plan index holds
	// (default 50,000); past it, some are dropped and read through SQL
	// again when next asked.
	PlanIndexSubjects int
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

	log        *slog.Logger
	id         string      // the store identity inside the database
	file       os.FileInfo // the database file opened, for the watcher
	watchDone  chan struct{}
	walFull    chan struct{}         // the checkpointer asks the idle writer to bound the log
	failure    store.Failure         // set once the store has failed for good
	lastWrite  atomic.Pointer[error] // the last refused write, until one succeeds
	walNext    time.Time             // writer only: no log restart before
	walBackoff time.Duration         // writer only: the wait after the last failed restart
	ckpt       sync.Mutex            // one checkpoint at a time in this process (see boundWAL)
	dbSyncs    atomic.Int64          // the checkpointer's syncs of the database file

	idx      *planIndex // nil without the plan index
	feed     feedMarks  // the feed's counts, remembered (feedmark.go)
	shm      *shmHeader // the wal-index header, mapped read-only
	idxCheck chan struct{}
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

	// What the transaction did to the resources table, for the plan index
	// (nil without one), and the wal-index change counter it started at.
	log      *idxLog
	change0  uint32
	changeOK bool
	total0   int64
	wrote    bool
}

func (w *writeTx) exec(ctx context.Context, q string, args ...any) (res sql.Result, err error) {
	if st, ok := w.stmts[q]; ok {
		res, err = w.tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	} else {
		res, err = w.tx.ExecContext(ctx, q, args...)
	}
	if err == nil {
		w.log.note(q, args, res)
	}
	return res, err
}

func (w *writeTx) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	if st, ok := w.stmts[q]; ok {
		return w.tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return w.tx.QueryRowContext(ctx, q, args...)
}

// Open opens (creating if needed) the database in dir.
func Open(dir string, opts Options) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store/sqlite: creating data dir: %w", err)
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.WatchInterval <= 0 {
		opts.WatchInterval = defaultWatchInterval
	}
	if opts.CheckTimeout == 0 {
		opts.CheckTimeout = defaultCheckTimeout
	}
	if opts.WALLimit <= 0 {
		opts.WALLimit = defaultWALLimit
	}
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = defaultBusyTimeout
	}
	busy := "_pragma=busy_timeout(" + itoa(opts.BusyTimeout.Milliseconds()) + ")"
	path := filepath.Join(dir, FileName)
	marker, err := store.ReadMarker(dir)
	if err != nil {
		return nil, err
	}
	info, err := os.Stat(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("store/sqlite: %w", err)
	}
	if (info == nil || info.Size() == 0) && !opts.ResetIdentity {
		// Refuse before SQLite creates a new empty database in its place.
		if err := store.CheckIdentity(dir, marker, "", "the database "+path, false); err != nil {
			return nil, err
		}
	}
	if err := checkFilesBeforeOpen(path); err != nil {
		return nil, err
	}
	// The seal is taken, and the file read for it, before SQLite opens the
	// file; no other Open or Close of this process reads the file until
	// this one's connection is open (see sealMu).
	sealMu.Lock()
	sealUnlock := sync.OnceFunc(sealMu.Unlock)
	defer sealUnlock()
	sealed, err := takeSeal(path)
	if err != nil {
		return nil, err
	}
	dsn := "file:" + path + "?" + busy + "&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)&_pragma=temp_store(MEMORY)&_pragma=wal_autocheckpoint(0)&_txlock=immediate" +
		"&_pragma=journal_size_limit(" + itoa(opts.WALLimit) + ")"
	w, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store/sqlite: open: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	migrated, err := migrate(w)
	if err != nil {
		w.Close()
		return nil, err
	}
	if migrated {
		sealed.counted = false // the shutdown counted the file as it was before the upgrade
	}
	sealUnlock() // the writer's connection is open
	if err := os.Chmod(path, 0o600); err != nil {
		w.Close()
		return nil, fmt.Errorf("store/sqlite: %w", err)
	}
	id, err := storeID(w, true)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("store/sqlite: reading the store identity: %w", err)
	}
	if err := store.CheckIdentity(dir, marker, id, "the database "+path, opts.ResetIdentity); err != nil {
		w.Close()
		return nil, err
	}
	if marker != id {
		if err := store.WriteMarker(dir, id); err != nil {
			w.Close()
			return nil, err
		}
		opts.Log.Info("store identity recorded", slog.String("store_id", id), slog.Bool("reset", opts.ResetIdentity && marker != ""))
	}
	// mode=rw: a reader connection opened after the file was deleted must
	// fail, not create a new empty database at the path.
	r, err := sql.Open("sqlite", "file:"+path+"?mode=rw&"+busy+"&_pragma=query_only(1)")
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
	// The check counts the indexes on the read pool, on every core at once.
	if err := startupCheck(w, r, opts.CheckTimeout, opts.Log, sealed); err != nil {
		w.Close()
		r.Close()
		return nil, err
	}
	file, err := os.Stat(path)
	if err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("store/sqlite: %w", err)
	}
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
	s := &Store{path: path, w: w, wstmts: wstmts, r: r, ops: make(chan *op, maxBatch), quit: make(chan struct{}), done: make(chan struct{}), checkpointDone: make(chan struct{}), opts: opts,
		walFull: make(chan struct{}, 1), log: opts.Log, id: id, file: file, watchDone: make(chan struct{}), idxCheck: make(chan struct{}, 1)}
	if !opts.NoPlanIndex {
		s.openPlanIndex()
	}
	go s.writer()
	go s.checkpointer()
	go s.watch()
	return s, nil
}

// Close stops the writer after the queued operations and closes the database.
func (s *Store) Close() error {
	var err error
	s.closed.Do(func() {
		close(s.quit)
		<-s.done
		<-s.checkpointDone
		<-s.watchDone
		s.closePlanIndex()
		t0 := time.Now()
		var counted bool
		var damage error
		if s.broken() == nil && s.verifyFile() == "" {
			counted, damage = s.countForSeal()
		}
		s.stmts.Range(func(_, v any) bool { v.(*sql.Stmt).Close(); return true })
		for _, st := range s.wstmts {
			st.Close()
		}
		err = errors.Join(s.r.Close(), s.w.Close())
		if damage != nil {
			s.log.Error("the index counts disagree at shutdown: the database is not sealed, and the next start checks it in full", slog.String("error", damage.Error()))
			err = errors.Join(err, damage)
		}
		if err == nil && s.broken() == nil && s.verifyFile() == "" {
			// A clean close: seal the file for the next start (see seal.go).
			sealMu.Lock()
			serr := writeSeal(s.path, counted)
			sealMu.Unlock()
			if serr != nil {
				s.log.Warn("the database could not be sealed at shutdown; the next start checks it in full", slog.String("error", serr.Error()))
			} else {
				s.log.Info("database sealed at shutdown", slog.Duration("took", time.Since(t0)), slog.Bool("indexes_counted", counted))
			}
		}
	})
	return err
}

// Ping checks the store has not failed and the read pool answers; after a
// refused write, it also needs a probe write to succeed (see probe), so
// readiness follows whether audited reads can be answered.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.checkFile(); err != nil {
		return err
	}
	var one int
	if err := s.r.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("store/sqlite: ping: %w: %v", store.ErrUnavailable, err)
	}
	select {
	case <-s.quit:
		return fmt.Errorf("store/sqlite: ping: %w: closed", store.ErrUnavailable)
	default:
	}
	if s.lastWrite.Load() != nil {
		err := s.probe(ctx)
		s.noteWrite(ctx, err)
		if err != nil {
			return fmt.Errorf("store/sqlite: ping: writes are refused: %w", err)
		}
	}
	return nil
}

// defaultBusyTimeout is how long a connection waits for another process's
// lock.
const defaultBusyTimeout = 10 * time.Second

// isBusy says err is SQLite's: another connection holds the lock wanted.
func isBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
}

// checkpointInterval is how often the WAL is copied back into the database.
const checkpointInterval = time.Second

// defaultWALLimit bounds the write-ahead log file. Each restart of the log
// holds writes for a sync of the database file, and audited reads write
// the log at tens of MB a second (about 55 MB/s at national volume). The
// sync was long (45 ms at 1,000 children, 150 to 200 ms at national
// volume) until the checkpointer synced the file itself each turn (see
// passiveCheckpoint); the limit was raised from 64 MiB to make those holds
// rarer, and keeps them rare.
const defaultWALLimit = 256 << 20

// checkpointer copies the write-ahead log into the database file in the
// background (PASSIVE: it never blocks the writer or readers), so commits
// on the writer never pay for a checkpoint. A PASSIVE checkpoint cannot
// rewind the log while readers keep reading it, and under continuous load
// they always do; so when the log passes WALLimit the checkpointer asks the
// writer to bound it (see boundWAL).
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
			// just grows meanwhile (up to WALLimit), and every commit in it
			// is durable.
			s.passiveCheckpoint()
		}
	}
}

// passiveCheckpoint is one turn of the checkpointer: a PASSIVE checkpoint,
// then a sync of the database file it wrote.
//
// SQLite syncs the database file at the end of a checkpoint only when it
// copied the log to its very end; under load, readers still on earlier
// commits keep the end from being copied, so it never syncs and the pages
// it wrote stay in the page cache, unwritten. The log's restart (see
// restartWAL) must sync them all, holding writes: at national volume 150
// to 200 ms every 5 s (a sync of the database file timed alone before the
// restart took as long, one just after it 0.1 ms), and that hold was the
// audited reads' p99. Synced here each turn, away from the writer, the
// restart has only the last moment's pages to sync. Durability does not
// depend on this sync: every commit is in the synced log until a restart,
// and the restart syncs the database file before it rewinds the log.
// It returns the log's frames and those copied, as SQLite counts them.
func (s *Store) passiveCheckpoint() (logged, copied int) {
	s.ckpt.Lock()
	var busy int
	err := s.r.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &logged, &copied)
	s.ckpt.Unlock()
	if err == nil && copied > 0 {
		s.syncDB()
	}
	if s.walSize() > s.opts.WALLimit {
		select {
		case s.walFull <- struct{}{}:
		default:
		}
	}
	return logged, copied
}

// syncDB syncs the database file's written pages to disk (a read-only
// descriptor of the same file: fsync flushes the file, whichever
// descriptor asks). A failure is left to the restart's own sync, which
// SQLite checks.
func (s *Store) syncDB() {
	f, err := os.Open(s.path)
	if err != nil {
		return
	}
	if f.Sync() == nil {
		s.dbSyncs.Add(1)
	}
	_ = f.Close()
}

func (s *Store) walSize() int64 {
	info, err := os.Stat(s.path + "-wal")
	if err != nil {
		return 0
	}
	return info.Size()
}

// walWait bounds the checkpoint that copies the log into the database
// before a restart; readerWait, how long the writer then waits for readers
// still reading the log to finish.
const (
	walWait    = 5 * time.Second
	readerWait = 100 * time.Millisecond
)

// boundWAL runs on the writer between commits: when the log file has passed
// limit, it has SQLite restart the log (see restartWAL), so new commits
// overwrite it from the start and the file, cut back to WALLimit by
// journal_size_limit, stays bounded. Writes queue meanwhile. The
// checkpointer asks for it at WALLimit right after its own PASSIVE turn,
// when little of the log is left to copy; after each commit the writer
// bounds the log itself at twice the limit, in case the checkpointer falls
// behind. If readers hold the log past readerWait (a long export), it
// gives up and tries again later, backing off from 250 ms to 4 s.
func (s *Store) boundWAL(limit int64) {
	if s.walSize() <= limit || time.Now().Before(s.walNext) {
		return
	}
	// A checkpoint that finds another one running answers busy at once,
	// without waiting (SQLite does not call the busy handler for the
	// checkpoint lock): so the background PASSIVE one is waited for here,
	// or the log grows for another retry interval at full write rate.
	s.ckpt.Lock()
	defer s.ckpt.Unlock()
	if err := s.restartWAL(); err != nil {
		// Each try holds writes for up to readerWait: while a reader holds
		// the log (an export can for minutes), try less and less often.
		s.walBackoff = min(max(2*s.walBackoff, 250*time.Millisecond), 4*time.Second)
		s.walNext = time.Now().Add(s.walBackoff)
		s.log.Warn("the write-ahead log is over its limit and could not be emptied yet", slog.Int64("wal_bytes", s.walSize()), slog.Int64("limit", s.opts.WALLimit),
			slog.Duration("next_try_in", s.walBackoff))
		return
	}
	s.walBackoff = 0
}

// restartWAL runs RESTART checkpoints on the writer's connection until one
// succeeds: the first copies what the log holds into the database and syncs
// it (the part of a restart that costs: one sync of the database file, of
// the pages copied since the checkpointer's last turn synced them);
// once the log is copied whole, SQLite starts new readers on the database
// alone, so the readers left on the log are only those that began before,
// and the next tries, every 200 µs without SQLite's busy handler and its
// sleeps of up to 100 ms, wait for those to finish. No new reader is held
// back meanwhile.
func (s *Store) restartWAL() error {
	ctx, cancel := context.WithTimeout(context.Background(), walWait)
	defer cancel()
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `PRAGMA busy_timeout = 0`); err != nil {
		return err
	}
	defer conn.ExecContext(context.Background(), `PRAGMA busy_timeout = `+itoa(s.opts.BusyTimeout.Milliseconds()))
	var giveUp time.Time
	for {
		var busy, logged, done int
		err := conn.QueryRowContext(ctx, `PRAGMA wal_checkpoint(RESTART)`).Scan(&busy, &logged, &done)
		switch {
		case err == nil && busy == 0:
			return nil
		case err != nil && !isBusy(err):
			return err
		case giveUp.IsZero():
			giveUp = time.Now().Add(readerWait)
		case time.Now().After(giveUp):
			return errors.New("readers hold the log")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Microsecond):
		}
	}
}

// write queues fn to run in the next group commit and waits for the commit.
func (s *Store) write(ctx context.Context, fn func(ctx context.Context, tx *writeTx) error) error {
	if err := s.broken(); err != nil {
		return err
	}
	o := &op{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case s.ops <- o:
	case <-s.quit:
		return fmt.Errorf("store/sqlite: %w: closed", store.ErrUnavailable)
	case <-ctx.Done():
		return fmt.Errorf("store/sqlite: %w: %w", store.ErrUnavailable, ctx.Err())
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
	last := 0           // the size of the last batch committed
	var ended time.Time // when it was committed
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
		case <-s.walFull:
			s.boundWAL(s.opts.WALLimit)
			continue
		case <-s.idxCheck:
			s.checkIndex()
			continue
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
		if last >= gatherFrom && time.Since(ended) < gatherFor {
			batch = s.gather(batch, gatherFor)
		}
		last = len(batch)
		s.commit(batch)
		ended = time.Now()
		s.boundWAL(2 * s.opts.WALLimit)
	}
}

// gatherFrom and gatherFor: after a batch of at least gatherFrom operations
// (writes arrive faster than the writer commits: audited reads under load)
// the writer gathers the next batch for up to gatherFor before it commits,
// if that batch's first write was waiting (it came within gatherFor of the
// commit): the first write after a lull commits at once.
// A commit costs its log frames, and every page a batch touches (an
// access-history index leaf per child, a feed page per local authority) is
// written once whatever the number of accesses on it: in
// BenchmarkAuditGroupCommit32 gathering for 1 ms took the accesses a
// commit from 14 to 25, the bytes written an access from 5.5 to 4.4 KB and
// the CPU an access by a fifth. A write alone, or a few, commits at once.
// The wait is short, though: with readers in the loop (cpis bench's
// audited search, 32 clients) each cycle of the writer is the gathering
// plus the commit, and the clients of one batch are back with their next
// access within a few hundred microseconds. Gathering for 300 µs rather
// than 1 ms served 15-25% more audited searches a second at 1,000 and at
// 150,000 children, at no more CPU an access; not gathering at all served
// fewer (README, Performance).
const (
	gatherFrom = 4
	gatherFor  = 300 * time.Microsecond
)

// gather adds to batch the operations queued and those that arrive within
// wait. What is queued is taken first: a select over a ready queue and a
// fired timer picks either, so once the timer had fired it could leave
// queued operations behind at random (TestGatherWaitsForMoreWrites failed
// on a loaded machine, when draining a full queue outlasted the wait).
func (s *Store) gather(batch []*op, wait time.Duration) []*op {
	t := time.NewTimer(wait)
	defer t.Stop()
	for len(batch) < maxBatch {
		select {
		case o := <-s.ops:
			batch = append(batch, o)
			continue
		default:
		}
		select {
		case o := <-s.ops:
			batch = append(batch, o)
		case <-t.C:
			return batch
		}
	}
	return batch
}

func (s *Store) commit(batch []*op) {
	if s.opts.BatchObserver != nil {
		s.opts.BatchObserver(len(batch))
	}
	live := batch[:0:0]
	failed := s.checkFile()
	for _, o := range batch {
		if failed != nil {
			o.done <- failed
			continue
		}
		if err := o.ctx.Err(); err != nil {
			o.done <- fmt.Errorf("store/sqlite: %w: %w", store.ErrUnavailable, err)
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
	errs, w, err := s.run(live, len(live) == 1)
	if err == errOpFailed {
		errs, w, err = s.run(live, true)
	}
	if err == nil && w != nil {
		// Before anyone is told the write succeeded.
		s.indexCommitted(w)
	}
	for i, o := range live {
		switch {
		case err != nil:
			o.done <- fmt.Errorf("store/sqlite: %w: %w", store.ErrUnavailable, err)
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
func (s *Store) run(ops []*op, isolate bool) ([]error, *writeTx, error) {
	ctx := context.Background()
	errs := make([]error, len(ops))
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, nil, err
	}
	w := &writeTx{tx: tx, stmts: s.wstmts}
	s.indexBegin(ctx, w)
	for i, o := range ops {
		if isolate {
			if _, err := w.exec(ctx, `SAVEPOINT op`); err != nil {
				tx.Rollback()
				return nil, nil, err
			}
		}
		mark := w.log.mark()
		errs[i] = o.fn(ctx, w)
		switch {
		case errs[i] != nil && !isolate:
			tx.Rollback()
			return nil, nil, errOpFailed
		case errs[i] != nil:
			if _, err := w.exec(ctx, `ROLLBACK TO op`); err != nil {
				tx.Rollback()
				return nil, nil, err
			}
			w.log.undo(mark)
		}
		if isolate {
			if _, err := w.exec(ctx, `RELEASE op`); err != nil {
				tx.Rollback()
				return nil, nil, err
			}
		}
	}
	if len(ops) == 1 && errs[0] != nil {
		// A lone failed operation: nothing to commit.
		if err := tx.Rollback(); err != nil {
			return nil, nil, err
		}
		return errs, nil, nil
	}
	s.indexCommitting(ctx, w)
	if err := tx.Commit(); err != nil {
		return nil, nil, err
	}
	return errs, w, nil
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
	if err := s.broken(); err != nil {
		return nil, err
	}
	st, err := s.stmt(ctx, q)
	if err != nil {
		return nil, unavailableCtx(ctx, err)
	}
	if st == nil {
		rows, err := s.r.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, unavailableCtx(ctx, err)
		}
		return rows, nil
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, unavailableCtx(ctx, err)
	}
	return rows, nil
}

func unavailable(err error) error {
	return fmt.Errorf("store/sqlite: %w: %v", store.ErrUnavailable, err)
}

// unavailableCtx is unavailable, keeping the caller's context error (a
// client that went away, a deadline) where that is what stopped the call.
func unavailableCtx(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("store/sqlite: %w: %w (%v)", store.ErrUnavailable, cerr, err)
	}
	return unavailable(err)
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
