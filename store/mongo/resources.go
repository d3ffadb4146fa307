package mongo

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	mongodrv "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readconcern"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"

	"cpis/store"
)

// openEnd stands for "no end" in the end field, so that one range condition
// both keeps open records (retention) and leaves them alone (purge).
const openEnd = math.MaxInt64

// version is one stored version of a record, as the document holds it: at
// the top level for the current version (where the indexes see it) and as an
// element of history for every version. Times are Unix nanoseconds, as in
// the SQLite store, so nothing is rounded to BSON's milliseconds.
type version struct {
	Version int64  `bson:"version"`
	Updated int64  `bson:"updated"`
	Deleted bool   `bson:"deleted"`
	Owner   string `bson:"owner"`
	Subject string `bson:"subject"`
	End     int64  `bson:"end"` // openEnd if the record has no end
	Body    []byte `bson:"body,omitempty"`
	Ends    *int64 `bson:"ends,omitempty"`
	// Start is the period's start (store.Record.Start) in Unix
	// milliseconds; absent if none. Documents written before it was kept
	// are given it at Open (backfillStart).
	Start *int64 `bson:"start,omitempty"`
	// The derived record, if any.
	DType string `bson:"dtype,omitempty"`
	DBody []byte `bson:"dbody,omitempty"`
	DEnds *int64 `bson:"dends,omitempty"`
}

// resource is the one document of a record: _id "type/id". Types lists the
// record's type and its derived record's, so one indexed condition finds
// either. Keys are "type|system|value", absent when there are none (and on
// tombstones), so the sparse unique index never sees them.
type resource struct {
	Key     string    `bson:"_id"`
	Type    string    `bson:"type"`
	ID      string    `bson:"id"`
	Types   []string  `bson:"types"`
	Keys    []string  `bson:"keys,omitempty"`
	Current version   `bson:",inline"`
	History []version `bson:"history,omitempty"`
}

func docKey(typ, id string) string { return typ + "/" + id }

func searchKey(typ, key string) string { return typ + "|" + key }

func newResource(r store.Record) *resource {
	v := version{
		Version: r.Version, Updated: r.Updated.UnixNano(), Deleted: r.Deleted,
		Owner: r.Owner, Subject: r.Subject, End: openEnd, Body: r.Body, Ends: nanos(r.Ends), Start: millis(r.Start),
	}
	if !r.End.IsZero() {
		v.End = r.End.UnixNano()
	}
	if r.Derived != nil {
		v.DType, v.DBody, v.DEnds = r.Derived.Type, r.Derived.Body, nanos(r.Derived.Ends)
	}
	d := &resource{Key: docKey(r.Type, r.ID), Type: r.Type, ID: r.ID, Types: []string{r.Type}, Current: v}
	if r.Derived != nil {
		if r.Derived.Type != r.Type {
			d.Types = append(d.Types, r.Derived.Type)
		}
	}
	if !r.Deleted {
		for _, k := range r.Keys {
			d.Keys = append(d.Keys, searchKey(r.Type, k))
		}
	}
	d.History = []version{v}
	return d
}

// update is the write that moves an existing document to d's version.
func (d *resource) update() bson.D {
	v := d.Current
	set := bson.D{
		{Key: "type", Value: d.Type}, {Key: "id", Value: d.ID}, {Key: "types", Value: d.Types},
		{Key: "version", Value: v.Version}, {Key: "updated", Value: v.Updated}, {Key: "deleted", Value: v.Deleted},
		{Key: "owner", Value: v.Owner}, {Key: "subject", Value: v.Subject}, {Key: "end", Value: v.End},
	}
	var unset bson.D
	opt := func(name string, present bool, value any) {
		if present {
			set = append(set, bson.E{Key: name, Value: value})
		} else {
			unset = append(unset, bson.E{Key: name, Value: ""})
		}
	}
	opt("keys", len(d.Keys) > 0, d.Keys)
	opt("body", len(v.Body) > 0, v.Body)
	opt("ends", v.Ends != nil, v.Ends)
	opt("start", v.Start != nil, v.Start)
	opt("dtype", v.DType != "", v.DType)
	opt("dbody", len(v.DBody) > 0, v.DBody)
	opt("dends", v.DEnds != nil, v.DEnds)
	u := bson.D{{Key: "$set", Value: set}, {Key: "$push", Value: bson.D{{Key: "history", Value: v}}}}
	if len(unset) > 0 {
		u = append(u, bson.E{Key: "$unset", Value: unset})
	}
	return u
}

// record returns version v of the document as a record of type typ: the
// document's own resource, or the one derived from it.
func (d *resource) record(v *version, typ string) store.Record {
	rec := store.Record{
		Type: d.Type, ID: d.ID, Version: v.Version, Updated: time.Unix(0, v.Updated).UTC(), Deleted: v.Deleted,
		Owner: v.Owner, Subject: v.Subject, Body: v.Body, Ends: fromNanos(v.Ends), Start: fromMillis(v.Start),
	}
	if v.End != openEnd {
		rec.End = time.Unix(0, v.End).UTC()
	}
	if v.DType != "" {
		dr := &store.Derived{Type: v.DType, Body: v.DBody, Ends: fromNanos(v.DEnds)}
		if typ == dr.Type {
			rec.Type, rec.Body, rec.Ends = dr.Type, dr.Body, dr.Ends
			return rec
		}
		rec.Derived = dr
	}
	return rec
}

func nanos(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	n := t.UnixNano()
	return &n
}

func fromNanos(n *int64) time.Time {
	if n == nil {
		return time.Time{}
	}
	return time.Unix(0, *n).UTC()
}

// millis is a Start as the start field holds it (nil: none).
func millis(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	n := t.UnixMilli()
	return &n
}

func fromMillis(n *int64) time.Time {
	if n == nil {
		return time.Time{}
	}
	return time.UnixMilli(*n).UTC()
}

var noHistory = bson.D{{Key: "history", Value: 0}}

// errKeyRace: a unique key that was free when checked was taken before the
// write; the write did not happen and may be retried.
var errKeyRace = errors.New("store/mongo: unique key taken concurrently")

// Commit applies writes atomically. One write is one conditional document
// write, atomic on every topology; several need a transaction, which only
// replica sets and sharded clusters have.
func (s *Store) Commit(ctx context.Context, writes []store.Write) error {
	if err := s.broken(); err != nil {
		return err
	}
	if len(writes) == 0 {
		return nil
	}
	for _, w := range writes {
		if err := w.Check(); err != nil {
			return err
		}
	}
	err := s.commit(ctx, writes)
	s.noteWrite(ctx, err)
	return err
}

func (s *Store) commit(ctx context.Context, writes []store.Write) error {
	if len(writes) > 1 {
		if !s.transactions {
			return fmt.Errorf("store/mongo: commit of %d records: %w", len(writes), store.ErrTransactionsUnsupported)
		}
		return s.commitTransaction(ctx, writes)
	}
	w := writes[0]
	defer s.lockRecord(docKey(w.Record.Type, w.Record.ID))()
	return s.run(ctx, func(ctx context.Context) error {
		for attempt := 0; attempt < 3; attempt++ {
			if err := s.apply(ctx, w, false); !errors.Is(err, errKeyRace) {
				return err
			}
		}
		return contended(writes)
	})
}

// apply writes one record. The write itself is the compare-and-swap: an
// insert when no version is expected (the _id index refuses a second), else
// an update filtered on the expected version. Keys are checked first only to
// name the holder in the error; the unique index is what enforces them.
func (s *Store) apply(ctx context.Context, w store.Write, inTransaction bool) error {
	r := w.Record
	d := newResource(r)
	if inTransaction {
		// In a snapshot a failed write aborts the transaction, so check the
		// version first, as the SQLite store does.
		if err := s.checkVersion(ctx, d.Key, w.Expect); err != nil {
			return err
		}
	}
	if k, ok := repeatedKey(r); ok {
		// The SQLite store refuses a record listing a key twice, as held by itself.
		if err := s.checkVersion(ctx, d.Key, w.Expect); err != nil {
			return err
		}
		return fmt.Errorf("store/mongo: %w", &store.UniqueError{Type: r.Type, Key: k, HeldBy: r.ID})
	}
	if len(d.Keys) > 0 {
		held, err := s.keyHolder(ctx, r, d)
		if err != nil {
			return err
		}
		if held != nil {
			// A stale version is reported before a key conflict, as SQLite does.
			if err := s.checkVersion(ctx, d.Key, w.Expect); err != nil {
				return err
			}
			return fmt.Errorf("store/mongo: %w", held)
		}
	}
	if w.Expect == 0 {
		_, err := s.res.InsertOne(ctx, d)
		switch {
		case err == nil:
			return nil
		case !isDuplicate(err):
			return s.fail("insert "+d.Key, err)
		case inTransaction:
			return errKeyRace
		}
		// The id exists (a version conflict) or a key was taken since the check.
		if err := s.checkVersion(ctx, d.Key, 0); err != nil {
			return err
		}
		return errKeyRace
	}
	res, err := s.res.UpdateOne(ctx, bson.D{{Key: "_id", Value: d.Key}, {Key: "version", Value: w.Expect}}, d.update())
	switch {
	case isDuplicate(err):
		return errKeyRace
	case err != nil:
		return s.fail("update "+d.Key, err)
	case res.MatchedCount == 0:
		return fmt.Errorf("store/mongo: %s/%s is not at version %d: %w", r.Type, r.ID, w.Expect, store.ErrVersionConflict)
	}
	return nil
}

func repeatedKey(r store.Record) (string, bool) {
	if r.Deleted {
		return "", false
	}
	for i, k := range r.Keys {
		if slices.Contains(r.Keys[:i], k) {
			return k, true
		}
	}
	return "", false
}

// checkVersion returns a version conflict unless the record is at expect (0:
// absent).
func (s *Store) checkVersion(ctx context.Context, key string, expect int64) error {
	var cur struct {
		Version int64 `bson:"version"`
	}
	err := s.res.FindOne(ctx, bson.D{{Key: "_id", Value: key}}, options.FindOne().SetProjection(bson.D{{Key: "version", Value: 1}})).Decode(&cur)
	if err != nil && !errors.Is(err, mongodrv.ErrNoDocuments) {
		return s.fail("reading "+key, err)
	}
	if cur.Version != expect {
		return fmt.Errorf("store/mongo: %s is at version %d, not %d: %w", key, cur.Version, expect, store.ErrVersionConflict)
	}
	return nil
}

// keyHolder names the first of r's keys held by another live record.
func (s *Store) keyHolder(ctx context.Context, r store.Record, d *resource) (*store.UniqueError, error) {
	cur, err := s.res.Find(ctx,
		bson.D{{Key: "keys", Value: bson.D{{Key: "$in", Value: d.Keys}}}, {Key: "_id", Value: bson.D{{Key: "$ne", Value: d.Key}}}},
		options.Find().SetProjection(bson.D{{Key: "id", Value: 1}, {Key: "keys", Value: 1}}).SetLimit(int64(len(d.Keys))))
	if err != nil {
		return nil, s.fail("checking keys", err)
	}
	var holders []struct {
		ID   string   `bson:"id"`
		Keys []string `bson:"keys"`
	}
	if err := cur.All(ctx, &holders); err != nil {
		return nil, s.fail("checking keys", err)
	}
	for i, k := range d.Keys {
		for _, h := range holders {
			if slices.Contains(h.Keys, k) {
				return &store.UniqueError{Type: r.Type, Key: r.Keys[i], HeldBy: h.ID}, nil
			}
		}
	}
	return nil, nil
}

// commitTransaction applies several writes in one multi-document
// transaction: snapshot reads, a journaled majority commit.
func (s *Store) commitTransaction(ctx context.Context, writes []store.Write) error {
	topts := options.Transaction().
		SetReadConcern(readconcern.Snapshot()).
		SetWriteConcern(majority()).
		SetReadPreference(readpref.Primary())
	return s.run(ctx, func(ctx context.Context) error {
		sess := mongodrv.SessionFromContext(ctx)
		var err error
		for attempt := 0; attempt < 5; attempt++ {
			if err = sess.StartTransaction(topts); err != nil {
				return s.fail("starting a transaction", err)
			}
			err = func() error {
				for _, w := range writes {
					if err := s.apply(ctx, w, true); err != nil {
						return err
					}
				}
				return nil
			}()
			if err != nil {
				_ = sess.AbortTransaction(context.WithoutCancel(ctx))
				if errors.Is(err, errKeyRace) || hasLabel(err, "TransientTransactionError") {
					continue // a fresh snapshot sees what got in the way
				}
				return err
			}
			for i := 0; i < 3; i++ {
				err = sess.CommitTransaction(ctx)
				if !hasLabel(err, "UnknownTransactionCommitResult") {
					break
				}
			}
			if err == nil {
				return nil
			}
			if !hasLabel(err, "TransientTransactionError") {
				return s.fail("commit", err)
			}
		}
		if errors.Is(err, errKeyRace) {
			return contended(writes)
		}
		return s.fail("transaction kept conflicting", err)
	})
}

// contended is the answer when a key kept being taken between the check that
// would name its holder and the write: a unique conflict whose holder is
// unknown. It takes a holder that releases and retakes a key three times in a
// row.
func contended(writes []store.Write) error {
	for _, w := range writes {
		if r := w.Record; len(r.Keys) > 0 && !r.Deleted {
			return fmt.Errorf("store/mongo: %w", &store.UniqueError{Type: r.Type, Key: r.Keys[0]})
		}
	}
	return fmt.Errorf("store/mongo: the record changed under the write: %w", store.ErrVersionConflict)
}

func hasLabel(err error, label string) bool {
	var le mongodrv.LabeledError
	return errors.As(err, &le) && le.HasErrorLabel(label)
}

// find returns the document that holds typ/id: its own, or the document
// whose derived record it is.
func (s *Store) find(ctx context.Context, typ, id string, projection bson.D) (*resource, error) {
	var d resource
	o := options.FindOne().SetProjection(projection)
	err := s.res.FindOne(ctx, bson.D{{Key: "_id", Value: docKey(typ, id)}}, o).Decode(&d)
	if errors.Is(err, mongodrv.ErrNoDocuments) {
		err = s.res.FindOne(ctx, bson.D{{Key: "types", Value: typ}, {Key: "id", Value: id}}, o).Decode(&d)
	}
	switch {
	case errors.Is(err, mongodrv.ErrNoDocuments):
		return nil, fmt.Errorf("store/mongo: %s/%s: %w", typ, id, store.ErrNotFound)
	case err != nil:
		return nil, s.fail("reading "+typ+"/"+id, err)
	}
	return &d, nil
}

// Get returns the current version of a record or of a derived record.
func (s *Store) Get(ctx context.Context, typ, id string) (store.Record, error) {
	if err := s.broken(); err != nil {
		return store.Record{}, err
	}
	var rec store.Record
	err := s.run(ctx, func(ctx context.Context) error {
		d, err := s.find(ctx, typ, id, noHistory)
		if err != nil {
			return err
		}
		rec = d.record(&d.Current, typ)
		return nil
	})
	return rec, err
}

var historyOnly = bson.D{{Key: "type", Value: 1}, {Key: "id", Value: 1}, {Key: "history", Value: 1}}

// GetVersion returns one version of a record or of a derived record.
func (s *Store) GetVersion(ctx context.Context, typ, id string, v int64) (store.Record, error) {
	if err := s.broken(); err != nil {
		return store.Record{}, err
	}
	var rec store.Record
	err := s.run(ctx, func(ctx context.Context) error {
		d, err := s.find(ctx, typ, id, historyOnly)
		if err != nil {
			return err
		}
		for i := range d.History {
			if h := &d.History[i]; h.Version == v {
				if rec = d.record(h, typ); rec.Type == typ {
					return nil
				}
			}
		}
		return fmt.Errorf("store/mongo: %s/%s/_history/%d: %w", typ, id, v, store.ErrNotFound)
	})
	return rec, err
}

// History returns every version, newest first.
func (s *Store) History(ctx context.Context, typ, id string) ([]store.Record, error) {
	if err := s.broken(); err != nil {
		return nil, err
	}
	var out []store.Record
	err := s.run(ctx, func(ctx context.Context) error {
		d, err := s.find(ctx, typ, id, historyOnly)
		if err != nil {
			return err
		}
		slices.SortFunc(d.History, func(a, b version) int { return int(b.Version - a.Version) })
		for i := range d.History {
			if rec := d.record(&d.History[i], typ); rec.Type == typ {
				out = append(out, rec)
			}
		}
		if len(out) == 0 {
			return fmt.Errorf("store/mongo: %s/%s: %w", typ, id, store.ErrNotFound)
		}
		return nil
	})
	return out, err
}

// holderChunk bounds the keys one find of Holders asks about.
const holderChunk = 1000

// Holders returns the live record of typ holding each key: one find a chunk
// of keys, through the unique keys index; each document names the keys it
// holds.
func (s *Store) Holders(ctx context.Context, typ string, keys []string) (map[string]store.Record, error) {
	if err := s.broken(); err != nil {
		return nil, err
	}
	out := make(map[string]store.Record, len(keys))
	for chunk := range slices.Chunk(keys, holderChunk) {
		want := make(map[string]string, len(chunk)) // search key → key
		for _, k := range chunk {
			want[searchKey(typ, k)] = k
		}
		f := bson.D{{Key: "type", Value: typ}, {Key: "deleted", Value: false},
			{Key: "keys", Value: bson.D{{Key: "$in", Value: slices.Collect(maps.Keys(want))}}}}
		err := s.run(ctx, func(ctx context.Context) error {
			cur, err := s.res.Find(ctx, f, options.Find().SetProjection(noHistory))
			if err != nil {
				return s.fail("reading "+typ+" by identifier", err)
			}
			var docs []resource
			if err := cur.All(ctx, &docs); err != nil {
				return s.fail("reading "+typ+" by identifier", err)
			}
			for i := range docs {
				for _, sk := range docs[i].Keys {
					if k, ok := want[sk]; ok {
						out[k] = docs[i].record(&docs[i].Current, typ)
					}
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Search returns live records matching q: one indexed find (and a count if
// asked for).
func (s *Store) Search(ctx context.Context, q store.Query) ([]store.Record, int, error) {
	if err := s.broken(); err != nil {
		return nil, 0, err
	}
	f := bson.D{{Key: "types", Value: q.Type}, {Key: "deleted", Value: false}}
	switch {
	case len(q.Subjects) > 0:
		subj := bson.D{{Key: "$in", Value: q.Subjects}}
		if q.Subject != "" {
			subj = append(subj, bson.E{Key: "$eq", Value: q.Subject})
		}
		f = append(f, bson.E{Key: "subject", Value: subj})
	case q.Subject != "":
		f = append(f, bson.E{Key: "subject", Value: q.Subject})
	}
	if q.Owner != "" {
		f = append(f, bson.E{Key: "owner", Value: q.Owner})
	}
	if q.Key != "" {
		f = append(f, bson.E{Key: "keys", Value: searchKey(q.Type, q.Key)})
	}
	if q.OwnKey != "" {
		// A key type|owner|system|value with any owner segment: keys are
		// written under the record's own owner (store.Query.OwnKey).
		f = append(f, bson.E{Key: "keys", Value: bson.D{{Key: "$regex", Value: "^" + regexp.QuoteMeta(searchKey(q.Type, "")) + `[^|]*\|` + regexp.QuoteMeta(q.OwnKey) + "$"}}})
	}
	if !q.RetainedSince.IsZero() {
		f = append(f, bson.E{Key: "end", Value: bson.D{{Key: "$gte", Value: q.RetainedSince.UnixNano()}}})
	}
	if updated := updatedRange(q); updated != nil {
		f = append(f, bson.E{Key: "updated", Value: updated})
	}
	var idCond bson.D
	if len(q.IDs) > 0 {
		idCond = append(idCond, bson.E{Key: "$in", Value: q.IDs})
	}
	var recs []store.Record
	total := 0
	err := s.run(ctx, func(ctx context.Context) error {
		cf := f
		if idCond != nil {
			cf = append(slices.Clip(f), bson.E{Key: "id", Value: idCond})
		}
		if q.Count {
			n, err := s.res.CountDocuments(ctx, cf)
			if err != nil {
				return s.fail("counting "+q.Type, err)
			}
			total = int(n)
		}
		if q.Limit <= 0 {
			return nil
		}
		if q.Sort == store.SortStart || q.Sort == store.SortStartDesc {
			var err error
			recs, err = s.startPage(ctx, q, f, idCond)
			return err
		}
		order := bson.D{{Key: "id", Value: 1}}
		switch {
		case q.Sort == store.SortUpdated || q.Sort == store.SortUpdatedDesc:
			order = sortUpdated(q.Sort)
			if q.After != "" {
				f = append(f, afterUpdated(q))
			}
		case q.After != "":
			idCond = append(idCond, bson.E{Key: "$gt", Value: q.After})
		}
		if idCond != nil {
			f = append(f, bson.E{Key: "id", Value: idCond})
		}
		opts := options.Find().SetLimit(int64(q.Limit)).SetProjection(noHistory)
		if q.Sort != store.SortNone {
			opts.SetSort(order)
		}
		cur, err := s.res.Find(ctx, f, opts)
		if err != nil {
			return s.fail("searching "+q.Type, err)
		}
		var docs []resource
		if err := cur.All(ctx, &docs); err != nil {
			return s.fail("searching "+q.Type, err)
		}
		for i := range docs {
			recs = append(recs, docs[i].record(&docs[i].Current, q.Type))
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return recs, total, nil
}

// startPage reads a page of a sort by start: the records with a start in
// (start, id) order from the position, then, if the page is not full, those
// with none by id (the owner_types_start_id index serves both for an LA).
// A position among the records with no start reads only those.
func (s *Store) startPage(ctx context.Context, q store.Query, f, idCond bson.D) ([]store.Record, error) {
	dir, op := 1, "$gt"
	if q.Sort == store.SortStartDesc {
		dir, op = -1, "$lt"
	}
	var recs []store.Record
	find := func(cond bson.D, order bson.D, limit int) error {
		cur, err := s.res.Find(ctx, cond, options.Find().SetSort(order).SetLimit(int64(limit)).SetProjection(noHistory))
		if err != nil {
			return s.fail("searching "+q.Type, err)
		}
		var docs []resource
		if err := cur.All(ctx, &docs); err != nil {
			return s.fail("searching "+q.Type, err)
		}
		for i := range docs {
			recs = append(recs, docs[i].record(&docs[i].Current, q.Type))
		}
		return nil
	}
	if q.After == "" || !q.AfterStart.IsZero() {
		c := append(slices.Clip(f), bson.E{Key: "start", Value: bson.D{{Key: "$ne", Value: nil}}})
		if idCond != nil {
			c = append(c, bson.E{Key: "id", Value: idCond})
		}
		if q.After != "" {
			ms := q.AfterStart.UnixMilli()
			c = append(c, bson.E{Key: "$or", Value: bson.A{
				bson.D{{Key: "start", Value: bson.D{{Key: op, Value: ms}}}},
				bson.D{{Key: "start", Value: ms}, {Key: "id", Value: bson.D{{Key: op, Value: q.After}}}},
			}})
		}
		if err := find(c, bson.D{{Key: "start", Value: dir}, {Key: "id", Value: dir}}, q.Limit); err != nil {
			return nil, err
		}
		if len(recs) == q.Limit {
			return recs, nil
		}
	}
	c := append(slices.Clip(f), bson.E{Key: "start", Value: nil})
	ids := slices.Clip(idCond)
	if q.After != "" && q.AfterStart.IsZero() {
		ids = append(ids, bson.E{Key: op, Value: q.After})
	}
	if ids != nil {
		c = append(c, bson.E{Key: "id", Value: ids})
	}
	if err := find(c, bson.D{{Key: "id", Value: dir}}, q.Limit-len(recs)); err != nil {
		return nil, err
	}
	return recs, nil
}

// Purge removes what ended before cutoff: the records (each one document,
// with its history, derived record and keys), then the access records of
// subjects left with no record. Deletes are per document, so processes
// purging at once each count only what they removed.
func (s *Store) Purge(ctx context.Context, cutoff time.Time) (store.PurgeStats, error) {
	if err := s.broken(); err != nil {
		return store.PurgeStats{}, err
	}
	var stats store.PurgeStats
	err := s.run(ctx, func(ctx context.Context) error {
		res, err := s.res.DeleteMany(ctx, bson.D{{Key: "end", Value: bson.D{{Key: "$lt", Value: cutoff.UnixNano()}}}})
		if err != nil {
			return s.fail("purging records", err)
		}
		stats.Records = int(res.DeletedCount)
		stats.Audit, err = s.purgeAudit(ctx, cutoff)
		return err
	})
	return stats, err
}
