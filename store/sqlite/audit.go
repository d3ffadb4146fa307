package sqlite

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"cpis/store"
)

// Audit stores access records in the next group commit and returns once the
// commit is durable. audit_owner, the feed's index, holds only notifying
// records.
func (s *Store) Audit(ctx context.Context, recs []store.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	bodies := make([][]byte, len(recs))
	for i, a := range recs {
		bodies[i] = packBody(a.Body)
	}
	err := s.write(ctx, func(ctx context.Context, tx *writeTx) error {
		for i, a := range recs {
			q, args := sqlInsertAudit, []any{a.ID, a.Recorded.UnixNano(), a.Subject, a.Agent, a.Notify, strings.Join(a.Owners, " "), bodies[i]}
			if len(a.Views) > 0 {
				views, err := encodeViews(a.Views)
				if err != nil {
					return err
				}
				q, args = sqlInsertAuditViews, append(args, packBody(views))
			}
			res, err := tx.exec(ctx, q, args...)
			if err != nil {
				return unavailable(err)
			}
			if !a.Notify {
				continue
			}
			seq, err := res.LastInsertId()
			if err != nil {
				return unavailable(err)
			}
			for _, o := range a.Owners {
				if _, err := tx.exec(ctx, sqlInsertOwner, o, seq, a.Recorded.UnixNano()); err != nil {
					return unavailable(err)
				}
			}
		}
		return nil
	})
	s.noteWrite(ctx, err)
	return err
}

// sqlInsertAuditViews stores an access record with per-authority views, a
// few in a thousand; the rest use the prepared sqlInsertAudit.
const sqlInsertAuditViews = `INSERT INTO audit(id, recorded, subject, agent, notify, owners, body, views) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`

// encodeViews stores the views as one JSON object keyed by ODS code (each
// view is an AuditEvent, itself JSON).
func encodeViews(views map[string][]byte) ([]byte, error) {
	m := make(map[string]json.RawMessage, len(views))
	for o, v := range views {
		m[o] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("store/sqlite: encoding access record views: %w", err)
	}
	return b, nil
}

func decodeViews(b []byte) (map[string][]byte, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("store/sqlite: decoding access record views: %w: %w", store.ErrUnavailable, err)
	}
	views := make(map[string][]byte, len(m))
	for o, v := range m {
		views[o] = v
	}
	return views, nil
}

const auditCols = `a.seq, a.id, a.recorded, a.subject, a.agent, a.notify, a.owners, a.body, a.views`

func (s *Store) auditRecords(ctx context.Context, q string, args ...any) ([]store.AuditRecord, int64, error) {
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var out []store.AuditRecord
	var last int64
	for rows.Next() {
		var a store.AuditRecord
		var recorded int64
		var owners string
		var views []byte
		if err := rows.Scan(&last, &a.ID, &recorded, &a.Subject, &a.Agent, &a.Notify, &owners, &a.Body, &views); err != nil {
			return nil, 0, unavailableCtx(ctx, err)
		}
		a.Seq = last
		if a.Body, err = unpackBody(a.Body); err != nil {
			return nil, 0, unavailable(err)
		}
		if views, err = unpackBody(views); err != nil {
			return nil, 0, unavailable(err)
		}
		a.Recorded = time.Unix(0, recorded).UTC()
		a.Owners = strings.Fields(owners)
		if a.Views, err = decodeViews(views); err != nil {
			return nil, 0, err
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, unavailableCtx(ctx, err)
	}
	return out, last, nil
}

// AuditBySubject returns the most recent limit notifying access records
// about subject since a time, oldest first.
func (s *Store) AuditBySubject(ctx context.Context, subject string, since time.Time, limit int) ([]store.AuditRecord, error) {
	if limit <= 0 {
		return nil, nil
	}
	recs, _, err := s.auditRecords(ctx, `SELECT `+auditCols+` FROM audit a WHERE a.subject = ? AND a.notify = 1 AND a.recorded >= ?
		ORDER BY a.recorded DESC, a.seq DESC LIMIT `+strconv.Itoa(limit), subject, since.UnixNano())
	for i, j := 0, len(recs)-1; i < j; i, j = i+1, j-1 {
		recs[i], recs[j] = recs[j], recs[i]
	}
	return recs, err
}

// AuditHeadsBySubject is AuditBySubject without bodies, read from the
// audit_subject index alone (it holds every column returned): no table page
// is read and no body decompressed.
func (s *Store) AuditHeadsBySubject(ctx context.Context, subject string, since time.Time, limit int) ([]store.AuditRecord, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.query(ctx, `SELECT a.seq, a.id, a.recorded, a.subject, a.agent, a.owners FROM audit a INDEXED BY audit_subject
		WHERE a.subject = ? AND a.notify = 1 AND a.recorded >= ? ORDER BY a.recorded DESC, a.seq DESC LIMIT `+strconv.Itoa(limit), subject, since.UnixNano())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.AuditRecord
	for rows.Next() {
		a := store.AuditRecord{Notify: true}
		var recorded int64
		var owners string
		// The subject as stored, for the caller to check against the one
		// asked about.
		if err := rows.Scan(&a.Seq, &a.ID, &recorded, &a.Subject, &a.Agent, &owners); err != nil {
			return nil, unavailableCtx(ctx, err)
		}
		a.Recorded = time.Unix(0, recorded).UTC()
		a.Owners = strings.Fields(owners)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailableCtx(ctx, err)
	}
	slices.Reverse(out)
	return out, nil
}

// AuditBodies reads access records by sequence number: one statement
// whatever their number (they travel as one JSON array), each a seek on the
// table's key.
func (s *Store) AuditBodies(ctx context.Context, seqs []int64) ([]store.AuditRecord, error) {
	if len(seqs) == 0 {
		return nil, nil
	}
	list, err := json.Marshal(seqs)
	if err != nil {
		return nil, fmt.Errorf("store/sqlite: %w", err)
	}
	recs, _, err := s.auditRecords(ctx, `SELECT `+auditCols+` FROM json_each(?) j JOIN audit a ON a.seq = j.value ORDER BY j.key`, string(list))
	return recs, err
}

// AuditFeedTotal counts owner's feed from since, from audit_owner alone:
// once, then only what was recorded after (see feedmark.go).
func (s *Store) AuditFeedTotal(ctx context.Context, owner string, since time.Time) (int, error) {
	m, err := s.feedMarkOf(ctx, owner, since)
	return m.count, err
}

// firstSince is the smallest sequence number of owner's feed recorded at or
// after since, 0 if none (see feedmark.go).
func (s *Store) firstSince(ctx context.Context, owner string, since time.Time) (int64, error) {
	m, err := s.feedMarkOf(ctx, owner, since)
	return m.first, err
}

// AuditFeed pages through the access records that touched owner's records.
// The cursor is the last sequence number served: sequence numbers are
// assigned inside the single writer's transaction, so a record committed
// later always has a larger one and paging never skips or repeats.
func (s *Store) AuditFeed(ctx context.Context, owner string, since time.Time, cursor string, limit int) ([]store.AuditRecord, string, error) {
	after := int64(0)
	if cursor != "" {
		n, err := strconv.ParseInt(strings.TrimPrefix(cursor, "s"), 10, 64)
		if err != nil || !strings.HasPrefix(cursor, "s") || n < 0 {
			return nil, "", fmt.Errorf("store/sqlite: %w", store.ErrInvalidCursor)
		}
		after = n
	}
	// The page walks owner's feed in sequence order from the cursor. Start
	// it at the first record on or after since: from the feed's start it
	// would pass over every older record (a year of them) to find a week's.
	// The first is the smallest sequence number among the records since,
	// found once in audit_owner_recorded (owner, recorded, and seq, the
	// table's key) and remembered: records committed later have larger
	// numbers (see feedmark.go).
	first, err := s.firstSince(ctx, owner, since)
	if err != nil {
		return nil, "", err
	}
	if first == 0 {
		return nil, cursor, nil
	}
	from := max(after, first-1)
	recs, last, err := s.auditRecords(ctx, `SELECT `+auditCols+` FROM audit_owner o JOIN audit a ON a.seq = o.seq
		WHERE o.owner = ? AND o.seq > ? AND o.recorded >= ? ORDER BY o.seq LIMIT `+strconv.Itoa(limit),
		owner, from, since.UnixNano())
	if err != nil {
		return nil, "", err
	}
	if len(recs) == 0 {
		return nil, cursor, nil
	}
	return recs, "s" + strconv.FormatInt(last, 10), nil
}

// The sweep's pace. A purge finds what is due on the read pool (no lock
// held) and deletes it through the writer in slices of at most purgeBatch
// rows and purgeSlice of work, each its own operation in the writer's queue,
// so in this process audit writes commit between them. Between slices it
// pauses at least purgePause and twice the slice's time: another process's
// writer (a second server) waiting on SQLite's lock retries within a few
// milliseconds at first, and gets the lock in the pause.
const (
	purgeBatch = 500
	purgeSlice = 5 * time.Millisecond
	purgePause = 25 * time.Millisecond
)

// Purge removes what ended before cutoff: plans and their history and keys,
// then access records recorded before cutoff about subjects with no record
// left. Each delete checks its condition again in the write, so a plan
// updated or an access recorded meanwhile is kept, and purges running at
// once (in several processes) count each record once.
func (s *Store) Purge(ctx context.Context, cutoff time.Time) (store.PurgeStats, error) {
	stats, err := s.purge(ctx, cutoff)
	if isBusy(err) {
		// Another process (a second server's sweeper, a tool) kept the
		// write lock: the slice that waited deleted nothing, each slice
		// before it was whole, and the next sweep carries on.
		err = fmt.Errorf("store/sqlite: retention sweep: another process held the database's write lock for longer than %s; "+
			"the sweep stopped without deleting anything more (%d records and %d access records were purged before, each slice whole) and its next turn carries on: %w",
			s.opts.BusyTimeout, stats.Records, stats.Audit, err)
	}
	return stats, err
}

func (s *Store) purge(ctx context.Context, cutoff time.Time) (store.PurgeStats, error) {
	var stats store.PurgeStats
	end := cutoff.UnixNano()
	for {
		refs, err := s.purgeRecordCandidates(ctx, end)
		if err != nil {
			return stats, err
		}
		if len(refs) == 0 {
			break
		}
		n, err := s.purgeSlices(ctx, len(refs), func(ctx context.Context, tx *writeTx, i int) (int, error) {
			res, err := tx.exec(ctx, sqlPurgeRecord, refs[i][0], refs[i][1], end)
			if err != nil {
				return 0, unavailable(err)
			}
			if n, err := res.RowsAffected(); err != nil || n == 0 {
				return 0, err // updated or purged meanwhile
			}
			for _, q := range []string{sqlPurgeHistory, sqlPurgeKeys} {
				if _, err := tx.exec(ctx, q, refs[i][0], refs[i][1]); err != nil {
					return 0, unavailable(err)
				}
			}
			return 1, nil
		})
		stats.Records += n
		if err != nil {
			return stats, err
		}
		if len(refs) < purgeBatch {
			break
		}
	}
	// Access records, walked once in (recorded, seq) order: those about a
	// subject with a record left are passed over, not read again.
	var after audKey
	for {
		dues, next, err := s.purgeAuditCandidates(ctx, end, after)
		if err != nil {
			return stats, err
		}
		n, err := s.purgeSlices(ctx, len(dues), func(ctx context.Context, tx *writeTx, i int) (int, error) {
			res, err := tx.exec(ctx, sqlPurgeAudit, dues[i].seq, end)
			if err != nil {
				return 0, unavailable(err)
			}
			if n, err := res.RowsAffected(); err != nil || n == 0 {
				return 0, err // the subject has a record again, or purged meanwhile
			}
			// The feed index, each of its rows by key, and the count of
			// changes that tells the feed's marks to count again.
			for _, o := range strings.Fields(dues[i].owners) {
				if _, err := tx.exec(ctx, sqlPurgeFeedRow, o, dues[i].seq); err != nil {
					return 0, unavailable(err)
				}
			}
			if _, err := tx.exec(ctx, sqlFeedChanged); err != nil {
				return 0, unavailable(err)
			}
			return 1, nil
		})
		stats.Audit += n
		if err != nil {
			return stats, err
		}
		if next == (audKey{}) {
			break
		}
		after = next
	}
	return stats, nil
}

// The sweep's deletes, prepared on the writer at Open: each checks again
// that what it deletes is due.
const (
	sqlPurgeRecord  = `DELETE FROM resources WHERE type = ? AND id = ? AND plan_end IS NOT NULL AND plan_end < ?`
	sqlPurgeHistory = `DELETE FROM history WHERE type = ? AND id = ?`
	sqlPurgeKeys    = `DELETE FROM keys WHERE type = ? AND id = ?`
	sqlPurgeAudit   = `DELETE FROM audit WHERE seq = ? AND recorded < ?
		AND NOT EXISTS (SELECT 1 FROM resources r WHERE r.subject = audit.subject)`
	sqlPurgeFeedRow = `DELETE FROM audit_owner WHERE owner = ? AND seq = ?`
)

// purgeRecordCandidates reads (on the read pool) up to purgeBatch records
// whose period ended before end.
func (s *Store) purgeRecordCandidates(ctx context.Context, end int64) ([][2]string, error) {
	rows, err := s.query(ctx, `SELECT type, id FROM resources WHERE plan_end IS NOT NULL AND plan_end < ? LIMIT `+strconv.Itoa(purgeBatch), end)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var refs [][2]string
	for rows.Next() {
		var t, id string
		if err := rows.Scan(&t, &id); err != nil {
			return nil, unavailableCtx(ctx, err)
		}
		refs = append(refs, [2]string{t, id})
	}
	return refs, unavailableErr(ctx, rows.Err())
}

// audKey is a position in the access records' (recorded, seq) order.
type audKey struct{ recorded, seq int64 }

type dueAudit struct {
	seq    int64
	owners string
}

// purgeAuditCandidates reads (on the read pool) the access records due
// after a position: up to purgeBatch of them, and the position to go on
// from (zero when none are left). It looks at no more than purgeScan
// records, so a long stretch of records still retained is crossed over
// several reads, none holding a snapshot for long.
func (s *Store) purgeAuditCandidates(ctx context.Context, end int64, after audKey) ([]dueAudit, audKey, error) {
	rows, err := s.query(ctx, `SELECT a.seq, a.recorded, a.owners, NOT EXISTS (SELECT 1 FROM resources r WHERE r.subject = a.subject)
		FROM audit a WHERE a.recorded < ? AND (a.recorded, a.seq) > (?, ?) ORDER BY a.recorded, a.seq LIMIT `+strconv.Itoa(purgeScan),
		end, after.recorded, after.seq)
	if err != nil {
		return nil, audKey{}, err
	}
	defer rows.Close()
	var dues []dueAudit
	var last audKey
	seen := 0
	for rows.Next() && len(dues) < purgeBatch {
		var d dueAudit
		var due bool
		if err := rows.Scan(&d.seq, &last.recorded, &d.owners, &due); err != nil {
			return nil, audKey{}, unavailableCtx(ctx, err)
		}
		last.seq = d.seq
		seen++
		if due {
			dues = append(dues, d)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, audKey{}, unavailableCtx(ctx, err)
	}
	if seen < purgeScan && len(dues) < purgeBatch {
		return dues, audKey{}, nil // the end of what is old enough
	}
	return dues, last, nil
}

// purgeScan bounds the access records one candidate read looks at.
const purgeScan = 5000

func unavailableErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	return unavailableCtx(ctx, err)
}

// purgeSlices deletes items 0..n-1 through the writer, del deleting one and
// saying how many records it removed: as many per operation as fit in
// purgeSlice and purgeBatch, pausing between operations (see purgePause).
func (s *Store) purgeSlices(ctx context.Context, n int, del func(ctx context.Context, tx *writeTx, i int) (int, error)) (int, error) {
	removed := 0
	for next := 0; next < n; {
		var took time.Duration
		stop, got := next, 0
		err := s.write(ctx, func(ctx context.Context, tx *writeTx) error {
			// The writer may run an operation twice (see Store.run): each
			// run starts afresh, and only the committed one is counted.
			start := time.Now()
			stop, got = next, 0
			for ; stop < n && time.Since(start) < purgeSlice; stop++ {
				k, err := del(ctx, tx, stop)
				if err != nil {
					return err
				}
				got += k
			}
			took = time.Since(start)
			return nil
		})
		if err != nil {
			return removed, err
		}
		next, removed = stop, removed+got
		if next < n || n == purgeBatch {
			select {
			case <-time.After(max(purgePause, 2*took)):
			case <-ctx.Done():
				return removed, fmt.Errorf("store/sqlite: %w: %w", store.ErrUnavailable, ctx.Err())
			}
		}
	}
	return removed, nil
}

// Access-record bodies are stored compressed: an AuditEvent is 2 to 3 KB
// of JSON with much repeated text, and every audited read writes one, so
// its size is most of what an audited read costs the disk and the log.
// A stored body is one of:
//   - JSON as written before compression (it starts with '{');
//   - packedBody followed by a DEFLATE stream (written before the
//     dictionary, still read);
//   - packedDict followed by a DEFLATE stream against auditDict, the
//     preset dictionary (written before Zstandard, still read);
//   - packedZstd followed by a Zstandard frame against auditDict: what is
//     written now. Most of an AuditEvent is text every AuditEvent repeats,
//     which the dictionary already holds, so a body compresses to about a
//     tenth of its JSON.
//
// The Zstandard encoder keeps the dictionary's tables prepared and, for
// each body, restores only the parts of its table the last body changed;
// DEFLATE hashed the whole dictionary into its window again for every
// body, three quarters of its work. At its fastest level Zstandard packs
// an AuditEvent in 40% of DEFLATE's CPU, 5% larger (BenchmarkPackBody);
// compressing had been 15% of the server's CPU under audited searches.
// Schema 15 marks a database that may hold packedZstd bodies, so a server
// from before them refuses it rather than reading one as JSON.
const (
	packedBody = 0x01
	packedDict = 0x02
	packedZstd = 0x03
)

var dict = []byte(auditDict)

// auditDictID names auditDict in each frame's header: a frame packed
// against another dictionary does not decode against this one.
const auditDictID = 0xC915

// maxPackedBody bounds what one stored body may decompress to: far more
// than any access record, and a bound on the memory a damaged frame can
// ask for.
const maxPackedBody = 64 << 20

// auditZ packs and unpacks access-record bodies against auditDict.
var auditZ = newZPool(auditDictID, dict)

// inflaters keeps decompressors for the DEFLATE bodies: each holds a
// 32 KB window, which made allocating one per body most of the cost of
// reading a history.
var inflaters = sync.Pool{New: func() any { return flate.NewReader(bytes.NewReader(nil)) }}

func packBody(b []byte) []byte {
	out := make([]byte, 1, len(b)/4+32)
	out[0] = packedZstd
	out = auditZ.pack(out, b)
	if len(out) >= len(b) {
		return b
	}
	return out
}

func unpackBody(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return b, nil
	}
	switch b[0] {
	case packedZstd:
		body, err := auditZ.unpack(b[1:])
		if err != nil {
			return nil, fmt.Errorf("store/sqlite: a stored access record does not decompress: %w", err)
		}
		return body, nil
	case packedBody, packedDict:
	default:
		return b, nil
	}
	var d []byte
	if b[0] == packedDict {
		d = dict
	}
	r := inflaters.Get().(io.ReadCloser)
	defer inflaters.Put(r)
	if err := r.(flate.Resetter).Reset(bytes.NewReader(b[1:]), d); err != nil {
		return nil, fmt.Errorf("store/sqlite: a stored access record does not decompress: %w", err)
	}
	// Into a scratch buffer kept between calls, then one copy of exactly
	// the body's size: growing a fresh buffer to an unknown size made two
	// to three times the body in garbage, per body, on every feed page and
	// access history read.
	sp := unpackScratch.Get().(*[]byte)
	buf := (*sp)[:0]
	defer func() {
		if cap(buf) <= maxUnpackScratch {
			*sp = buf[:0]
			unpackScratch.Put(sp)
		}
	}()
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, max(cap(buf), 4096))
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("store/sqlite: a stored access record does not decompress: %w", err)
		}
	}
	return bytes.Clone(buf), nil
}

// unpackScratch holds unpackBody's scratch buffers; one grown past
// maxUnpackScratch is left to the collector.
var unpackScratch = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

const maxUnpackScratch = 1 << 20
