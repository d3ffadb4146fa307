package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"cpis/store"
)

// The plan index: an in-memory map from NHS number to the current,
// not-deleted records about that patient (a plan and its Flag), so that a
// search by NHS number, the hot path of the service, runs no SQL when the
// child has no plan and at most one primary-key lookup when it has (none
// when the Flag's body is held in memory too).
//
// It is kept by the single writer: every change to the resources table goes
// through writeTx.exec, which records what the statement did; after the
// transaction commits, and before any caller is told its write succeeded,
// the writer applies the changes under the index's lock. A reader therefore
// never sees the index ahead of the store (changes are applied only after
// the commit) nor behind a write it was told had succeeded.
//
// Another process writing the same database file (cpis import, cpis store
// commands, a second Open in a test) does not go through this writer. Every
// commit in WAL mode increments the change counter (iChange) of the
// wal-index header in the -shm file that SQLite maps into every process
// using the database; the index remembers the counter it is current at, and
// a search reads the counter from its own read-only mapping of the -shm
// file (two memory loads, no system call). If the counter moved and the
// writer did not account for it, the search answers through SQL and the
// writer rebuilds the index in a transaction of its own (while it holds
// SQLite's write lock, so nobody commits during the scan).
//
// Memory: each indexed record costs its id, a few integers and map entries
// (about 250 bytes; 150,000 children are about 40 MB, see
// TestPlanIndexMemory150k); derived bodies (the Flag as served) are held
// too, up to Options.PlanIndexBodies bytes in all; past that, a Flag's body
// is read by primary key.

// defaultPlanIndexBodies bounds the derived bodies the index holds.
const defaultPlanIndexBodies = 32 << 20

// ientry is one indexed record: a current, not-deleted row with a subject.
type ientry struct {
	typ, dtype string // dtype "" when the row has no derived record
	id         string
	owner      string
	subject    string
	version    int64
	updated    int64
	end        sql.NullInt64 // plan_end
	ends       sql.NullInt64
	dends      sql.NullInt64
	dbody      []byte // the derived body, if held (nil: read it by primary key)
}

type planIndex struct {
	mu        sync.RWMutex
	valid     bool
	change    uint32 // the wal-index change counter the index is current at
	bySubject map[string][]*ientry
	byKey     map[string]*ientry // type + "\x00" + id
	bodies    int64              // bytes of dbody held
	budget    int64
	intern    map[string]string // owners, types: a few distinct strings

	hits, misses atomic.Int64 // searches answered from the index, and not
	builds       atomic.Int64
}

func newPlanIndex(budget int64) *planIndex {
	return &planIndex{budget: budget, bySubject: map[string][]*ientry{}, byKey: map[string]*ientry{}, intern: map[string]string{}}
}

func (x *planIndex) str(s string) string {
	if v, ok := x.intern[s]; ok {
		return v
	}
	if len(x.intern) < 4096 {
		x.intern[s] = s
	}
	return s
}

// remove drops typ/id; the caller holds mu.
func (x *planIndex) remove(typ, id string) {
	k := typ + "\x00" + id
	e, ok := x.byKey[k]
	if !ok {
		return
	}
	delete(x.byKey, k)
	x.bodies -= int64(len(e.dbody))
	list := x.bySubject[e.subject]
	if i := slices.Index(list, e); i >= 0 {
		list = slices.Delete(list, i, i+1)
	}
	if len(list) == 0 {
		delete(x.bySubject, e.subject)
	} else {
		x.bySubject[e.subject] = list
	}
}

// put stores row r (a tombstone or a row without subject is removed); the
// caller holds mu.
func (x *planIndex) put(r row) {
	x.remove(r.typ, r.id)
	if r.deleted || r.subject == "" {
		return
	}
	e := &ientry{typ: x.str(r.typ), id: r.id, owner: x.str(r.owner), subject: r.subject, version: r.version,
		updated: r.updated, end: r.end, ends: r.ends, dends: r.dends}
	if r.dtype.Valid {
		e.dtype = x.str(r.dtype.String)
		if r.dbody != nil && x.bodies+int64(len(r.dbody)) <= x.budget {
			e.dbody = slices.Clone(r.dbody)
			x.bodies += int64(len(e.dbody))
		}
	}
	x.byKey[r.typ+"\x00"+r.id] = e
	x.bySubject[r.subject] = append(x.bySubject[r.subject], e)
}

// ichange is one change the writer made to the resources table.
type ichange struct {
	put    *row      // the row written
	remove [2]string // or the record removed
}

// idxLog is what one writer transaction did to the resources table.
type idxLog struct {
	changes []ichange
	// rebuild: a statement changed resources in a way not recorded; the
	// index must be built again from the table.
	rebuild bool
	// built is a whole index read inside the transaction (a rebuild).
	built *planIndex
}

// mark and undo drop what an operation rolled back to its savepoint did.
func (l *idxLog) mark() int {
	if l == nil {
		return 0
	}
	return len(l.changes)
}

func (l *idxLog) undo(mark int) {
	if l != nil {
		l.changes = l.changes[:mark]
		l.built = nil
	}
}

// statements that mention resources but do not change it.
var readsResources = map[string]bool{
	sqlToHistory: true, sqlPurgeAudit: true, sqlVersion: true,
}

// note records what a successful statement did to the resources table.
func (l *idxLog) note(q string, args []any, res sql.Result) {
	if l == nil {
		return
	}
	switch q {
	case sqlUpsertResource, sqlLoadResource:
		r, ok := rowFromValues(args)
		if !ok {
			l.rebuild = true
			return
		}
		l.changes = append(l.changes, ichange{put: &r})
	case sqlPurgeRecord:
		n, err := res.RowsAffected()
		if err != nil {
			l.rebuild = true
			return
		}
		if n > 0 {
			typ, _ := args[0].(string)
			id, _ := args[1].(string)
			l.changes = append(l.changes, ichange{remove: [2]string{typ, id}})
		}
	default:
		if !readsResources[q] && strings.Contains(q, "resources") && !strings.HasPrefix(strings.TrimSpace(strings.ToUpper(q)), "SELECT") {
			l.rebuild = true
		}
	}
}

// rowFromValues reads back the arguments values() makes.
func rowFromValues(a []any) (row, bool) {
	if len(a) != 13 {
		return row{}, false
	}
	var r row
	var ok [7]bool
	r.typ, ok[0] = a[0].(string)
	r.id, ok[1] = a[1].(string)
	r.version, ok[2] = a[2].(int64)
	r.updated, ok[3] = a[3].(int64)
	r.deleted, ok[4] = a[4].(bool)
	r.owner, ok[5] = a[5].(string)
	r.subject, ok[6] = a[6].(string)
	for _, o := range ok {
		if !o {
			return row{}, false
		}
	}
	nullInt := func(v any, dst *sql.NullInt64) bool {
		switch n := v.(type) {
		case nil:
			return true
		case int64:
			*dst = sql.NullInt64{Int64: n, Valid: true}
			return true
		}
		return false
	}
	if !nullInt(a[7], &r.end) || !nullInt(a[8], &r.ends) || !nullInt(a[10], &r.dends) {
		return row{}, false
	}
	switch d := a[9].(type) {
	case nil:
	case string:
		r.dtype = sql.NullString{String: d, Valid: true}
	default:
		return row{}, false
	}
	r.dbody, _ = a[12].([]byte)
	return r, true
}

// sqlLoadResource is the load's insert of a current version (see loadItem).
const sqlLoadResource = `INSERT INTO resources(` + cols + `) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`

// shmHeader maps the wal-index header of the -shm file read-only.
type shmHeader struct {
	mem []byte
}

func mapSHM(path string) (*shmHeader, error) {
	f, err := os.Open(path + "-shm")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if info.Size() < 4096 {
		return nil, fmt.Errorf("the -shm file is %d bytes", info.Size())
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, 4096, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	return &shmHeader{mem: mem}, nil
}

// change reads the header's commit counter (iChange), and whether both
// copies of the header agreed on it (SQLite writes the second copy first,
// so equal copies are a header not being written at that moment).
func (h *shmHeader) change() (uint32, bool) {
	p := unsafe.Pointer(&h.mem[0])
	c1 := atomic.LoadUint32((*uint32)(unsafe.Add(p, 8)))
	init1 := atomic.LoadUint32((*uint32)(unsafe.Add(p, 12)))
	c2 := atomic.LoadUint32((*uint32)(unsafe.Add(p, 48+8)))
	init2 := atomic.LoadUint32((*uint32)(unsafe.Add(p, 48+12)))
	// isInit is the byte at offset 12.
	return c1, c1 == c2 && init1 == init2 && init1&0xff != 0
}

func (h *shmHeader) close() {
	if h != nil {
		syscall.Munmap(h.mem)
	}
}

// openPlanIndex maps the -shm file and builds the index, before the writer
// starts (so on this goroutine). Without the mapping there is no index and
// every search uses SQL.
func (s *Store) openPlanIndex() {
	h, err := mapSHM(s.path)
	if err != nil {
		s.log.Warn("no plan index: searches by NHS number use SQL", "error", err.Error())
		return
	}
	budget := s.opts.PlanIndexBodies
	switch {
	case budget == 0:
		budget = defaultPlanIndexBodies
	case budget < 0:
		budget = 0
	}
	s.shm, s.idx = h, newPlanIndex(budget)
	s.rebuildIndex()
}

// closePlanIndex unmaps the header once no search reads it.
func (s *Store) closePlanIndex() {
	if s.idx == nil {
		return
	}
	s.idx.mu.Lock()
	defer s.idx.mu.Unlock()
	s.idx.valid = false
	s.shm.close()
	s.shm = nil
}

// indexBegin runs at the start of a writer transaction, under SQLite's write
// lock: nobody else can commit until it ends, so the counter read here is
// the store's state the transaction starts from.
func (s *Store) indexBegin(ctx context.Context, w *writeTx) {
	if s.idx == nil {
		return
	}
	w.log = &idxLog{}
	c, ok := s.shm.change()
	w.change0, w.changeOK = c, ok
	if err := w.tx.QueryRowContext(ctx, `SELECT total_changes()`).Scan(&w.total0); err != nil {
		w.changeOK = false
	}
}

// indexCommitting runs just before the COMMIT: whether this transaction
// changed anything (and so will add one to the counter).
func (s *Store) indexCommitting(ctx context.Context, w *writeTx) {
	if w.log == nil {
		return
	}
	var total int64
	if err := w.tx.QueryRowContext(ctx, `SELECT total_changes()`).Scan(&total); err != nil {
		w.changeOK = false
	}
	w.wrote = total != w.total0
}

// indexCommitted applies a committed transaction's changes to the index,
// before any of its callers is answered.
func (s *Store) indexCommitted(w *writeTx) {
	l := w.log
	if l == nil {
		return
	}
	want := w.change0
	if w.wrote {
		want++
	}
	x := s.idx
	x.mu.Lock()
	defer x.mu.Unlock()
	after, okAfter := s.shm.change()
	switch {
	case l.built != nil && w.changeOK && okAfter && after == want:
		x.bySubject, x.byKey, x.bodies, x.intern = l.built.bySubject, l.built.byKey, l.built.bodies, l.built.intern
		x.valid, x.change = true, after
		x.builds.Add(1)
		return
	case !x.valid:
		return
	case !w.changeOK || !okAfter || w.change0 != x.change || after != want || l.rebuild:
		// Someone else committed since the index was last current (before
		// this transaction, or between its commit and now), or the
		// transaction did what the index cannot follow: build it again.
		x.valid = false
		s.requestCheck()
		return
	}
	for _, c := range l.changes {
		if c.put != nil {
			x.put(*c.put)
		} else {
			x.remove(c.remove[0], c.remove[1])
		}
	}
	x.change = after
}

// rebuildIndex runs on the writer: it reads every current, not-deleted row
// with a subject inside a write transaction and installs the result after
// the commit (see indexCommitted).
func (s *Store) rebuildIndex() {
	if s.idx == nil || time.Now().Before(s.idxNext) {
		if s.idx != nil {
			// Too soon after the last build: try again when it is due.
			time.AfterFunc(time.Until(s.idxNext), s.requestCheck)
		}
		return
	}
	start := time.Now()
	o := &op{ctx: context.Background(), done: make(chan error, 1), fn: func(ctx context.Context, tx *writeTx) error {
		if tx.log == nil {
			return nil
		}
		x := newPlanIndex(s.idx.budget)
		rows, err := tx.tx.QueryContext(ctx, `SELECT `+cols+` FROM resources WHERE deleted = 0 AND subject != ''`)
		if err != nil {
			return unavailable(err)
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scan(rows)
			if err != nil {
				return unavailable(err)
			}
			r.body = nil
			x.put(r)
		}
		if err := rows.Err(); err != nil {
			return unavailable(err)
		}
		tx.log.built = x
		return nil
	}}
	s.commit([]*op{o})
	if err := <-o.done; err != nil {
		s.log.Warn("the plan index could not be built; searches by NHS number use SQL until it is", "error", err.Error())
	}
	// A store written by another process all the time would otherwise be
	// rebuilt after every one of its commits: wait at least ten builds' time.
	s.idxNext = time.Now().Add(max(time.Second, 10*time.Since(start)))
}

// indexSearch answers a search from the index: ok false when it cannot (no
// index, a query it does not cover, the store changed under it), and the
// caller answers through SQL.
func (s *Store) indexSearch(ctx context.Context, q store.Query) ([]store.Record, int, bool, error) {
	if s.idx == nil || q.Subject == "" || q.Key != "" || q.OwnKey != "" {
		return nil, 0, false, nil
	}
	if err := s.broken(); err != nil {
		return nil, 0, true, err
	}
	x := s.idx
	x.mu.RLock()
	if !x.valid {
		x.mu.RUnlock()
		x.misses.Add(1)
		return nil, 0, false, nil
	}
	c, ok := s.shm.change()
	if !ok || x.change != c {
		x.mu.RUnlock()
		x.misses.Add(1)
		// Another process committed, or this writer's commit is not
		// applied yet: the writer tells which once it is idle.
		s.requestCheck()
		return nil, 0, false, nil
	}
	var matches []ientry
	for _, e := range x.bySubject[q.Subject] {
		if matchEntry(e, q) {
			matches = append(matches, *e)
		}
	}
	x.mu.RUnlock()
	total := len(matches)
	sortEntries(matches, q.Sort)
	if q.Limit <= 0 {
		if !q.Count {
			total = 0
		}
		x.hits.Add(1)
		return nil, total, true, nil
	}
	page := afterEntries(matches, q)
	if len(page) > q.Limit {
		page = page[:q.Limit]
	}
	var recs []store.Record // nil when none, as the SQL path
	for _, e := range page {
		if e.dtype == q.Type && e.dbody != nil {
			r := row{typ: e.typ, id: e.id, version: e.version, updated: e.updated, owner: e.owner, subject: e.subject,
				end: e.end, ends: e.ends, dends: e.dends, dtype: sql.NullString{String: e.dtype, Valid: true},
				dbody: slices.Clone(e.dbody)}
			recs = append(recs, r.record(q.Type))
			continue
		}
		got, err := s.records(ctx, q.Type, sqlByKey, e.typ, e.id)
		if err != nil {
			return nil, 0, true, err
		}
		if len(got) != 1 || got[0].Version != e.version || got[0].Deleted || got[0].Subject != e.subject {
			// Written since the index was read: answer through SQL.
			x.misses.Add(1)
			return nil, 0, false, nil
		}
		recs = append(recs, got[0])
	}
	if !q.Count || (q.After == "" && len(recs) < q.Limit) {
		total = len(recs)
	}
	x.hits.Add(1)
	return recs, total, true, nil
}

// sqlByKey reads one current row by primary key.
const sqlByKey = `SELECT ` + cols + ` FROM resources WHERE type = ? AND id = ?`

// requestCheck asks the writer to look at the counter (at most one request
// waits): see checkIndex.
func (s *Store) requestCheck() {
	select {
	case s.idxCheck <- struct{}{}:
	default:
	}
}

// checkIndex runs on the writer between batches, when every commit this
// writer made is applied to the index: a counter that differs from the
// index's now was moved by another process, and the index is built again.
func (s *Store) checkIndex() {
	x := s.idx
	x.mu.Lock()
	c, ok := s.shm.change()
	current := x.valid && ok && c == x.change
	if !current {
		x.valid = false
	}
	x.mu.Unlock()
	if !current {
		s.rebuildIndex()
	}
}

// matchEntry is searchWhere's condition, less the subject (the map's key).
func matchEntry(e *ientry, q store.Query) bool {
	if e.typ != q.Type && e.dtype != q.Type {
		return false
	}
	if len(q.IDs) > 0 && !slices.Contains(q.IDs, e.id) {
		return false
	}
	if q.Owner != "" && e.owner != q.Owner {
		return false
	}
	if !q.RetainedSince.IsZero() && e.end.Valid && e.end.Int64 < q.RetainedSince.UnixNano() {
		return false
	}
	if !q.UpdatedFrom.IsZero() && e.updated < q.UpdatedFrom.UnixNano() {
		return false
	}
	if !q.UpdatedTo.IsZero() && e.updated >= q.UpdatedTo.UnixNano() {
		return false
	}
	return true
}

// sortEntries is pageWhere's order.
func sortEntries(es []ientry, srt store.Sort) {
	slices.SortFunc(es, func(a, b ientry) int {
		switch srt {
		case store.SortUpdated:
			if a.updated != b.updated {
				return cmpInt(a.updated, b.updated)
			}
		case store.SortUpdatedDesc:
			if a.updated != b.updated {
				return cmpInt(b.updated, a.updated)
			}
			return strings.Compare(b.id, a.id)
		}
		return strings.Compare(a.id, b.id)
	})
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// afterEntries is pageWhere's keyset position.
func afterEntries(es []ientry, q store.Query) []ientry {
	if q.After == "" {
		return es
	}
	u := q.AfterUpdated.UnixNano()
	out := es[:0:0]
	for _, e := range es {
		var keep bool
		switch q.Sort {
		case store.SortUpdated:
			keep = e.updated > u || (e.updated == u && e.id > q.After)
		case store.SortUpdatedDesc:
			keep = e.updated < u || (e.updated == u && e.id < q.After)
		default:
			keep = e.id > q.After
		}
		if keep {
			out = append(out, e)
		}
	}
	return out
}

// PlanIndexStats is what the plan index holds, for tests and the bench.
type PlanIndexStats struct {
	Valid    bool
	Subjects int
	Records  int
	Bodies   int64
	// Hits and Misses count searches by NHS number answered from the
	// index and through SQL; Builds counts the index's builds.
	Hits, Misses, Builds int64
}

// PlanIndex reports the plan index's state (Valid false when there is none).
func (s *Store) PlanIndex() PlanIndexStats {
	if s.idx == nil {
		return PlanIndexStats{}
	}
	x := s.idx
	x.mu.RLock()
	defer x.mu.RUnlock()
	return PlanIndexStats{Valid: x.valid, Subjects: len(x.bySubject), Records: len(x.byKey), Bodies: x.bodies,
		Hits: x.hits.Load(), Misses: x.misses.Load(), Builds: x.builds.Load()}
}
