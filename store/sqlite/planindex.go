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
	"unsafe"

	"cpis/store"
)

// The plan index: an in-memory map from NHS number to the current,
// not-deleted records about that patient (a plan and its Flag), so that a
// search by NHS number, the hot path of the service, runs no SQL when the
// child has no plan and at most one primary-key lookup when it has (none
// when the Flag's body is held in memory too).
//
// It is filled lazily: the first search for an NHS number reads all of the
// patient's current records with one SQL query (what the search did before)
// and answers from them; the list is then kept for later searches, if no
// write could have changed the patient's records between that read and now
// (see fill). Open reads nothing, so a national store starts as fast as
// before.
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
// writer empties the index (every NHS number is read through SQL again).
//
// Memory is bounded: at most Options.PlanIndexSubjects NHS numbers (about
// 450 bytes each with one plan: 100,000 measured 45 MB, see
// BenchmarkPlanIndexMemory; the default is 50,000) and
// Options.PlanIndexBodies bytes of Flag bodies, held packed (default 8 MiB: about
// 80,000 Flags, see packFlag); past the first bound an eighth of the NHS numbers, chosen at
// random, are dropped, past the second a Flag's body is read by primary key.

// Defaults of the bounds.
const (
	defaultPlanIndexBodies   = 8 << 20
	defaultPlanIndexSubjects = 50000
)

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
	start      sql.NullInt64 // the period start (Unix milliseconds)
	dbody      []byte        // the derived body packed (flagZ), if held (nil: read it by primary key)
}

// fill is a reader reading a patient's records through SQL to add them to
// the index; a write that may change them while it reads makes it stale.
type fill struct {
	subject string
	gen     uint64
	stale   bool
}

type planIndex struct {
	mu     sync.RWMutex
	valid  bool   // false once closed
	gen    uint64 // counts the times the index was emptied
	change uint32 // the wal-index change counter the index is current at
	// bySubject holds, for each NHS number present, every current record
	// about it: a number absent is not known (read it through SQL), never
	// "no records".
	bySubject map[string][]*ientry
	byKey     map[string]*ientry // type + "\x00" + id
	fills     map[*fill]struct{}
	bodies    int64 // bytes of dbody held
	budget    int64
	subjects  int               // the bound on len(bySubject)
	intern    map[string]string // owners, types: a few distinct strings

	hits, misses, fills0, clears, bodyReads atomic.Int64
}

func newPlanIndex(budget int64, subjects int) *planIndex {
	return &planIndex{budget: budget, subjects: subjects, bySubject: map[string][]*ientry{}, byKey: map[string]*ientry{},
		fills: map[*fill]struct{}{}, intern: map[string]string{}}
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

// clear forgets every NHS number and makes every fill in progress stale;
// the caller holds mu.
func (x *planIndex) clear() {
	x.bySubject, x.byKey, x.bodies = map[string][]*ientry{}, map[string]*ientry{}, 0
	x.gen++
	x.clears.Add(1)
}

// forget drops one NHS number; the caller holds mu.
func (x *planIndex) forget(subject string) {
	for _, e := range x.bySubject[subject] {
		delete(x.byKey, e.typ+"\x00"+e.id)
		x.bodies -= int64(len(e.dbody))
	}
	delete(x.bySubject, subject)
}

// staleFills marks the fills of subject stale, or every fill when subject
// is "" (a change to a record whose NHS number the index does not know).
func (x *planIndex) staleFills(subject string) {
	for f := range x.fills {
		if subject == "" || f.subject == subject {
			f.stale = true
		}
	}
}

// entry makes the index's entry of row r, holding its derived body packed
// if the budget allows: packed is that body packed already (nil: pack it
// here, under the caller's lock, which fill and indexCommitted avoid).
func (x *planIndex) entry(r row, packed []byte) *ientry {
	e := &ientry{typ: x.str(r.typ), id: r.id, owner: x.str(r.owner), subject: r.subject, version: r.version,
		updated: r.updated, end: r.end, ends: r.ends, dends: r.dends, start: r.start}
	if r.dtype.Valid {
		e.dtype = x.str(r.dtype.String)
		if r.dbody != nil && x.bodies < x.budget {
			if packed == nil {
				packed = packFlag(r.dbody)
			}
			if x.bodies+int64(len(packed)) <= x.budget {
				e.dbody = packed
				x.bodies += int64(len(e.dbody))
			}
		}
	}
	return e
}

// Derived bodies (a plan's Flag) are held packed as Zstandard frames
// against flagDict: about a tenth of their JSON (TestPlanIndexHoldsFlagsPacked:
// 40 Flags, 43,220 bytes of JSON, held in 4,008), so the budget holds ten
// times as many, and a search whose Flag is held runs no SQL. They live in
// memory only, so flagDict may change with any release. Unpacking one
// takes a few microseconds; reading it by primary key from a national
// store takes tens (in a profile of the silent search at 150,000 children,
// with the default budget, the store's part was 23% of the CPU, most of
// it those reads).
func packFlag(b []byte) []byte { return flagZ.pack(make([]byte, 0, len(b)/4+32), b) }

var flagZ = newZPool(flagDictID, []byte(flagDict))

// flagDictID names flagDict in each packed body's frame.
const flagDictID = 0xF1A6

// flagDict is two Flags as the server derives them (a current child
// protection plan, an ended looked-after plan).
const flagDict = `{"resourceType":"Flag","id":"00000000-0000-7000-8000-000000000000","meta":{"versionId":"1","lastUpdated":"2026-01-01T00:00:00.000Z","profile":["https://fhir.cpis.dev/StructureDefinition/CPIS-Flag"]},"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/flag-detail","valueReference":{"reference":"EpisodeOfCare/00000000-0000-7000-8000-000000000000"}}],"status":"inactive","category":[{"coding":[{"system":"https://fhir.nhs.uk/England/CodeSystem/PatientFlagCategory","code":"CP-IS","display":"Child Protection - Information Sharing Flag"}]}],"code":{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/plan-type","code":"LAC","display":"Looked After Child"},{"system":"http://snomed.info/sct","code":"764841000000100","display":"Looked after child"}],"text":"Looked After Child"},"subject":{"type":"Patient","identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009"}},"period":{"start":"2024-01-01","end":"2026-01-01"},"author":{"type":"Organization","identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"LA000"},"display":"Council"}}` +
	`{"resourceType":"Flag","id":"00000000-0000-7000-8000-000000000000","meta":{"versionId":"1","lastUpdated":"2026-01-01T00:00:00.000Z","profile":["https://fhir.cpis.dev/StructureDefinition/CPIS-Flag"]},"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/flag-detail","valueReference":{"reference":"EpisodeOfCare/00000000-0000-7000-8000-000000000000"}}],"status":"active","category":[{"coding":[{"system":"https://fhir.nhs.uk/England/CodeSystem/PatientFlagCategory","code":"CP-IS","display":"Child Protection - Information Sharing Flag"}]}],"code":{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/plan-type","code":"CPP","display":"Child Protection Plan"},{"system":"http://snomed.info/sct","code":"1064311000000109","display":"Child protection plan"}],"text":"Child Protection Plan"},"subject":{"type":"Patient","identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009"}},"period":{"start":"2024-01-01"},"author":{"type":"Organization","identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"LA000"},"display":"Council"}}`

// packKnown packs, before the index's lock is taken, the Flags of the
// writes whose NHS numbers the index holds (the others get no entry):
// packed[i] is change i's, nil if none. A number a fill adds meanwhile has
// its Flag packed under the lock, by entry.
func (x *planIndex) packKnown(changes []ichange) [][]byte {
	packed := make([][]byte, len(changes))
	x.mu.RLock()
	for i, c := range changes {
		if x.bodies >= x.budget {
			break // entry would hold none
		}
		if r := c.put; r != nil && !r.deleted && r.dtype.Valid && r.dbody != nil {
			if _, known := x.bySubject[r.subject]; known {
				packed[i] = r.dbody
			}
		}
	}
	x.mu.RUnlock()
	for i, b := range packed {
		if b != nil {
			packed[i] = packFlag(b)
		}
	}
	return packed
}

// put applies a committed write of row r, its Flag packed already if
// packed is not nil; the caller holds mu.
func (x *planIndex) put(r row, packed []byte) {
	k := r.typ + "\x00" + r.id
	if old, ok := x.byKey[k]; ok {
		x.unlink(k, old)
		x.staleFills(old.subject)
	} else if r.version != 1 {
		// An earlier version was about an NHS number the index does not
		// know: any fill in progress may be reading it.
		x.staleFills("")
	}
	if r.subject == "" {
		return
	}
	x.staleFills(r.subject)
	if r.deleted {
		return
	}
	if list, known := x.bySubject[r.subject]; known {
		e := x.entry(r, packed)
		x.byKey[k] = e
		x.bySubject[r.subject] = append(list, e)
	}
}

// remove applies a committed removal of typ/id; the caller holds mu.
func (x *planIndex) remove(typ, id string) {
	k := typ + "\x00" + id
	if old, ok := x.byKey[k]; ok {
		x.unlink(k, old)
		x.staleFills(old.subject)
		return
	}
	x.staleFills("")
}

func (x *planIndex) unlink(k string, e *ientry) {
	delete(x.byKey, k)
	x.bodies -= int64(len(e.dbody))
	list := x.bySubject[e.subject]
	if i := slices.Index(list, e); i >= 0 {
		x.bySubject[e.subject] = slices.Delete(list, i, i+1)
	}
}

// ichange is one change the writer made to the resources table.
type ichange struct {
	put    *row      // the row written
	remove [2]string // or the record removed
}

// idxLog is what one writer transaction did to the resources table.
type idxLog struct {
	changes []ichange
	// unknown: a statement changed resources in a way not recorded; the
	// index must be emptied.
	unknown bool
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
			l.unknown = true
			return
		}
		l.changes = append(l.changes, ichange{put: &r})
	case sqlPurgeRecord:
		n, err := res.RowsAffected()
		if err != nil {
			l.unknown = true
			return
		}
		if n > 0 {
			typ, _ := args[0].(string)
			id, _ := args[1].(string)
			l.changes = append(l.changes, ichange{remove: [2]string{typ, id}})
		}
	default:
		if !readsResources[q] && strings.Contains(q, "resources") && !strings.HasPrefix(strings.TrimSpace(strings.ToUpper(q)), "SELECT") {
			l.unknown = true
		}
	}
}

// rowFromValues reads back the arguments values() makes, in cols' order:
// type, id, version, updated, deleted, owner, subject, plan_end, ends,
// start, dtype, dends, body, dbody.
func rowFromValues(a []any) (row, bool) {
	if len(a) != len(splitCols(cols)) {
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
	if !nullInt(a[7], &r.end) || !nullInt(a[8], &r.ends) || !nullInt(a[9], &r.start) || !nullInt(a[11], &r.dends) {
		return row{}, false
	}
	switch d := a[10].(type) {
	case nil:
	case string:
		r.dtype = sql.NullString{String: d, Valid: true}
	default:
		return row{}, false
	}
	r.dbody, _ = a[13].([]byte)
	return r, true
}

// sqlLoadResource is the load's insert of a current version (see loadItem).
const sqlLoadResource = `INSERT INTO resources(` + cols + `) VALUES ` + colValues

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

// change reads the header's commit counter (iChange, incremented by every
// commit in WAL mode, by any process), and whether both copies of the
// header agreed on it (SQLite writes the second copy first, so equal copies
// are a header not being written at that moment).
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

// openPlanIndex maps the -shm file and starts an empty index at the
// current counter, before the writer starts. Without the mapping there is
// no index and every search uses SQL.
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
	subjects := s.opts.PlanIndexSubjects
	if subjects <= 0 {
		subjects = defaultPlanIndexSubjects
	}
	x := newPlanIndex(budget, subjects)
	c, ok := h.change()
	x.change, x.valid = c, true
	if !ok {
		// A header being written: the first search sees the counter move
		// and the writer settles it.
		x.change = c - 1
	}
	s.shm, s.idx = h, x
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
	packed := x.packKnown(l.changes)
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.valid {
		return
	}
	after, okAfter := s.shm.change()
	if !w.changeOK || !okAfter || w.change0 != x.change || after != want || l.unknown {
		// Someone else committed since the index was last current (before
		// this transaction, or between its commit and now), or the
		// transaction did what the index cannot follow: forget everything.
		x.clear()
		x.change = after
		if !okAfter {
			x.change = want - 1 // settled by the next check
			s.requestCheck()
		}
		return
	}
	for i, c := range l.changes {
		if c.put != nil {
			x.put(*c.put, packed[i])
		} else {
			x.remove(c.remove[0], c.remove[1])
		}
	}
	x.change = after
}

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
// index's now was moved by another process, and the index is emptied.
func (s *Store) checkIndex() {
	x := s.idx
	x.mu.Lock()
	defer x.mu.Unlock()
	c, ok := s.shm.change()
	if !x.valid || (ok && c == x.change) {
		return
	}
	x.clear()
	x.change = c
	if !ok {
		x.change = c - 1
		s.requestCheck()
	}
}

// sqlBySubject reads every current record about a patient: what the index
// holds of them.
const sqlBySubject = `SELECT ` + cols + ` FROM resources WHERE subject = ? AND deleted = 0`

// indexSearch answers a search from the index: ok false when it cannot (no
// index, a query it does not cover, the store changed under it), and the
// caller answers through SQL.
func (s *Store) indexSearch(ctx context.Context, q store.Query) ([]store.Record, int, bool, error) {
	if s.idx == nil || q.Subject == "" || len(q.Subjects) > 0 || q.Key != "" || q.OwnKey != "" {
		return nil, 0, false, nil
	}
	if err := s.broken(); err != nil {
		return nil, 0, true, err
	}
	if err := ctx.Err(); err != nil {
		// As the SQL path: a caller gone (or out of time) gets its
		// context's error, not an answer.
		return nil, 0, true, fmt.Errorf("store/sqlite: %w: %w", store.ErrUnavailable, err)
	}
	x := s.idx
	x.mu.RLock()
	if !x.valid {
		x.mu.RUnlock()
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
	list, known := x.bySubject[q.Subject]
	var matches []ientry
	for _, e := range list {
		if matchEntry(e, q) {
			matches = append(matches, *e)
		}
	}
	x.mu.RUnlock()
	if !known {
		return s.fill(ctx, q)
	}
	recs, total, ok, err := s.answer(ctx, q, matches, nil)
	if ok && err == nil {
		x.hits.Add(1)
	} else if !ok {
		x.misses.Add(1)
	}
	return recs, total, ok, err
}

// fill answers a search for an NHS number the index does not know from all
// of the patient's current records, read with one SQL query, and adds them
// to the index unless a write may have changed them since the read began:
// one by this writer to the patient's records (or to a record about a
// number the index does not know), or any commit the writer has not
// accounted for (another process's, or one not applied yet).
func (s *Store) fill(ctx context.Context, q store.Query) ([]store.Record, int, bool, error) {
	x := s.idx
	x.mu.Lock()
	if !x.valid {
		x.mu.Unlock()
		return nil, 0, false, nil
	}
	f := &fill{subject: q.Subject, gen: x.gen}
	x.fills[f] = struct{}{}
	x.mu.Unlock()
	x.fills0.Add(1)

	rows, err := s.query(ctx, sqlBySubject, q.Subject)
	var got []row
	if err == nil {
		for rows.Next() {
			r, serr := scan(rows)
			if serr != nil {
				err = unavailableCtx(ctx, serr)
				break
			}
			got = append(got, r)
		}
		if err == nil {
			err = unavailableErr(ctx, rows.Err())
		}
		rows.Close()
	}

	// The Flags are packed before the index's lock is taken: readers wait
	// for none of it.
	packed := make([][]byte, len(got))
	for i, r := range got {
		if err == nil && r.dtype.Valid && r.dbody != nil {
			packed[i] = packFlag(r.dbody)
		}
	}

	x.mu.Lock()
	delete(x.fills, f)
	if err != nil {
		x.mu.Unlock()
		return nil, 0, true, err
	}
	var c uint32
	ok := false
	if x.valid { // not closed meanwhile (the header is unmapped then)
		c, ok = s.shm.change()
	}
	_, known := x.bySubject[q.Subject]
	if x.valid && !f.stale && f.gen == x.gen && ok && c == x.change && !known {
		if len(x.bySubject) >= x.subjects {
			x.evict()
		}
		list := make([]*ientry, 0, len(got))
		for i, r := range got {
			e := x.entry(r, packed[i])
			x.byKey[r.typ+"\x00"+r.id] = e
			list = append(list, e)
		}
		x.bySubject[q.Subject] = list
	}
	x.mu.Unlock()

	// The answer is the rows read, a consistent state of the store.
	var matches []ientry
	full := map[string]row{}
	for _, r := range got {
		e := ientry{typ: r.typ, dtype: r.dtype.String, id: r.id, owner: r.owner, subject: r.subject, version: r.version,
			updated: r.updated, end: r.end, ends: r.ends, dends: r.dends, start: r.start}
		if matchEntry(&e, q) {
			matches = append(matches, e)
			full[r.typ+"\x00"+r.id] = r
		}
	}
	return s.answer(ctx, q, matches, full)
}

// evict drops an eighth of the NHS numbers the index holds (the map's
// order, which Go randomises); the caller holds mu.
func (x *planIndex) evict() {
	n := max(1, len(x.bySubject)/8)
	for subject := range x.bySubject {
		if n == 0 {
			break
		}
		x.forget(subject)
		n--
	}
}

// answer pages and counts matches as Search does, and reads the records of
// the page: from rows read already (full), the body held, or by primary key.
func (s *Store) answer(ctx context.Context, q store.Query, matches []ientry, full map[string]row) ([]store.Record, int, bool, error) {
	total := len(matches)
	sortEntries(matches, q.Sort)
	if q.Limit <= 0 {
		if !q.Count {
			total = 0
		}
		return nil, total, true, nil
	}
	page := afterEntries(matches, q)
	if len(page) > q.Limit {
		page = page[:q.Limit]
	}
	var recs []store.Record // nil when none, as the SQL path
	for _, e := range page {
		if r, ok := full[e.typ+"\x00"+e.id]; ok {
			recs = append(recs, r.record(q.Type))
			continue
		}
		if e.dtype == q.Type && e.dbody != nil {
			// A body that does not unpack is read by primary key instead.
			if body, err := flagZ.unpack(e.dbody); err == nil {
				r := row{typ: e.typ, id: e.id, version: e.version, updated: e.updated, owner: e.owner, subject: e.subject,
					end: e.end, ends: e.ends, dends: e.dends, start: e.start, dtype: sql.NullString{String: e.dtype, Valid: true},
					dbody: body}
				recs = append(recs, r.record(q.Type))
				continue
			}
		}
		if full == nil {
			s.idx.bodyReads.Add(1)
		}
		got, err := s.records(ctx, q.Type, sqlByKey, e.typ, e.id)
		if err != nil {
			return nil, 0, true, err
		}
		if len(got) != 1 || got[0].Version != e.version || got[0].Deleted || got[0].Subject != e.subject {
			// Written since the index was read: answer through SQL.
			return nil, 0, false, nil
		}
		recs = append(recs, got[0])
	}
	if !q.Count || (q.After == "" && len(recs) < q.Limit) {
		total = len(recs)
	}
	return recs, total, true, nil
}

// sqlByKey reads one current row by primary key.
const sqlByKey = `SELECT ` + cols + ` FROM resources WHERE type = ? AND id = ?`

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

// sortEntries is pageWhere's order, or startPage's: by start either way
// with the id as tie-break, the records with no start last by id in the
// same direction.
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
		case store.SortStart, store.SortStartDesc:
			if a.start.Valid != b.start.Valid {
				if a.start.Valid {
					return -1
				}
				return 1
			}
			c := cmpInt(a.start.Int64, b.start.Int64)
			if c == 0 {
				c = strings.Compare(a.id, b.id)
			}
			if srt == store.SortStartDesc {
				return -c
			}
			return c
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
		case store.SortStart, store.SortStartDesc:
			keep = afterStart(e, q)
		default:
			keep = e.id > q.After
		}
		if keep {
			out = append(out, e)
		}
	}
	return out
}

// afterStart is startPage's position: past After among the records with a
// start (by start, then id), or, when After has none (AfterStart zero),
// past it among those with none (by id); every record with no start comes
// after every one with a start.
func afterStart(e ientry, q store.Query) bool {
	desc := q.Sort == store.SortStartDesc
	beyond := func(c int) bool { return (c > 0 && !desc) || (c < 0 && desc) }
	if q.AfterStart.IsZero() {
		return !e.start.Valid && beyond(strings.Compare(e.id, q.After))
	}
	if !e.start.Valid {
		return true
	}
	c := cmpInt(e.start.Int64, q.AfterStart.UnixMilli())
	if c == 0 {
		c = strings.Compare(e.id, q.After)
	}
	return beyond(c)
}

// PlanIndexStats is what the plan index holds, for tests and the bench.
type PlanIndexStats struct {
	Valid    bool
	Subjects int
	Records  int
	Bodies   int64
	// Hits counts searches by NHS number answered from the index, Misses
	// those answered through SQL because the store had changed under it,
	// Fills those answered through SQL for a number it did not hold, and
	// Clears the times it was emptied (another process wrote the store).
	Hits, Misses, Fills, Clears int64
	// BodyReads counts the records of answers from the index read by
	// primary key: their body was not held.
	BodyReads int64
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
		Hits: x.hits.Load(), Misses: x.misses.Load(), Fills: x.fills0.Load(), Clears: x.clears.Load(), BodyReads: x.bodyReads.Load()}
}
