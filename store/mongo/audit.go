package mongo

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	mongodrv "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"cpis/store"
)

// The LA feed, and why it never skips or repeats a record
//
// Every access record gets a sequence number, its _id, from a counter
// document ($inc, so unique across processes), and the feed pages by it. A
// counter alone is not enough: writer A takes 7, writer B takes 8, B's insert
// lands first, a reader serves 8 and moves its cursor past 7, and A's record
// then appears behind the cursor and is never served. So the feed serves only
// up to the horizon: the highest h such that every number up to h is taken by
// a stored document. A number not yet stored blocks the horizon until its
// insert lands, so nothing can appear behind a cursor.
//
// A writer that dies between taking a number and storing it would block the
// horizon for ever. When a reader has seen a number missing for
// FeedHoleGrace while later numbers are stored, it inserts a fence marker
// with that _id. The _id unique index decides the race with a slow writer:
// either the writer's insert wins (and the marker insert fails) or the marker
// wins, the writer's insert fails with a duplicate key, and the writer takes
// a new number and stores the record there, above the horizon. Either way
// the number is resolved exactly once, so the horizon only passes numbers
// whose final content is fixed. This needs no clocks: grace only decides how
// long the feed waits for a crashed writer, never whether a record is served.
//
// Writes wait for a journaled majority and reads are majority reads from the
// primary (causally after this process's own writes), so a record counted
// below the horizon cannot be rolled back by a failover. The horizon reached
// is saved (meta "audit_feed", only ever raised) so a reader starts scanning
// from there, not from the first record.
const (
	seqCounter  = "audit_seq"
	feedMark    = "audit_feed"
	horizonScan = 5000 // sequence numbers read per horizon step
	seqAttempts = 8    // tries to place a record whose number was fenced off
)

// auditDoc is one access record, or a fence marker (Fence, no id).
type auditDoc struct {
	Seq      int64    `bson:"_id"`
	ID       string   `bson:"id,omitempty"`
	Recorded int64    `bson:"recorded"`
	Subject  string   `bson:"subject"`
	Owners   []string `bson:"owners,omitempty"`
	Agent    string   `bson:"agent,omitempty"`
	Notify   bool     `bson:"notify"`
	Body     []byte   `bson:"body,omitempty"`
	Fence    bool     `bson:"fence,omitempty"`
	// Views: the AuditEvent each local authority is served, by ODS code,
	// where it differs from Body (see store.AuditRecord).
	Views map[string][]byte `bson:"views,omitempty"`
}

func newAuditDoc(a store.AuditRecord) auditDoc {
	var owners []string
	for _, o := range a.Owners {
		if !slices.Contains(owners, o) {
			owners = append(owners, o)
		}
	}
	slices.Sort(owners)
	return auditDoc{ID: a.ID, Recorded: a.Recorded.UnixNano(), Subject: a.Subject, Owners: owners,
		Agent: a.Agent, Notify: a.Notify, Body: a.Body, Views: a.Views}
}

func (d *auditDoc) record() store.AuditRecord {
	return store.AuditRecord{Seq: d.Seq, ID: d.ID, Recorded: time.Unix(0, d.Recorded).UTC(), Subject: d.Subject,
		Owners: d.Owners, Agent: d.Agent, Notify: d.Notify, Body: d.Body, Views: d.Views}
}

type auditOp struct {
	ctx  context.Context
	recs []store.AuditRecord
	done chan error
}

// Audit stores access records and returns once a journaled majority has
// them. Concurrent callers share one insertMany (a group commit), so durable
// audit writes cost the read path one round trip each, not a queue.
func (s *Store) Audit(ctx context.Context, recs []store.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	if err := s.broken(); err != nil {
		return err
	}
	err := s.audit1(ctx, recs)
	s.noteWrite(ctx, err)
	return err
}

func (s *Store) audit1(ctx context.Context, recs []store.AuditRecord) error {
	op := &auditOp{ctx: ctx, recs: recs, done: make(chan error, 1)}
	s.closing.RLock()
	if s.isClosed {
		s.closing.RUnlock()
		return fmt.Errorf("store/mongo: audit: %w: closed", store.ErrUnavailable)
	}
	select {
	case s.auditq <- op:
		s.closing.RUnlock()
	case <-ctx.Done():
		s.closing.RUnlock()
		return fmt.Errorf("store/mongo: audit: %w: %w", store.ErrUnavailable, ctx.Err())
	}
	// Once queued, wait for the outcome: the caller must know whether the
	// record is durable.
	return <-op.done
}

// auditWriter takes what is queued, up to maxAuditBatch records, and stores
// it in one group commit; it drains the queue when the store closes.
func (s *Store) auditWriter() {
	defer s.wg.Done()
	for {
		var batch []*auditOp
		select {
		case op := <-s.auditq:
			batch = append(batch, op)
		case <-s.quit:
			for {
				select {
				case op := <-s.auditq:
					s.flush([]*auditOp{op})
				default:
					return
				}
			}
		}
		n := len(batch[0].recs)
	fill:
		for n < maxAuditBatch {
			select {
			case op := <-s.auditq:
				batch = append(batch, op)
				n += len(op.recs)
			default:
				break fill
			}
		}
		s.flush(batch)
	}
}

func (s *Store) flush(batch []*auditOp) {
	errs := make([]error, len(batch))
	var docs []auditDoc
	var from []int // docs[j] belongs to batch[from[j]]
	for i, op := range batch {
		if err := op.ctx.Err(); err != nil {
			errs[i] = fmt.Errorf("store/mongo: audit: %w: %w", store.ErrUnavailable, err)
			continue
		}
		for _, a := range op.recs {
			docs = append(docs, newAuditDoc(a))
			from = append(from, i)
		}
	}
	if len(docs) > 0 {
		if s.opts.BatchObserver != nil {
			s.opts.BatchObserver(len(docs))
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.WriteTimeout)
		var docErrs []error
		err := s.run(ctx, func(ctx context.Context) error {
			var err error
			docErrs, err = s.insertAudit(ctx, docs)
			return err
		})
		cancel()
		for j, i := range from {
			switch {
			case errs[i] != nil:
			case err != nil:
				errs[i] = err
			case docErrs[j] != nil:
				errs[i] = docErrs[j]
			}
		}
	}
	for i, op := range batch {
		op.done <- errs[i]
	}
}

// insertAudit numbers docs and inserts them, renumbering any whose number a
// reader fenced off meanwhile. It returns an error per document (a duplicate
// caller id) or one for all. Documents that arrive numbered keep their
// numbers on the first attempt (tests use this to play a slow writer).
func (s *Store) insertAudit(ctx context.Context, docs []auditDoc) ([]error, error) {
	errs := make([]error, len(docs))
	pending := make([]int, len(docs))
	for i := range pending {
		pending[i] = i
	}
	for attempt := 0; len(pending) > 0; attempt++ {
		if attempt == seqAttempts {
			return nil, fmt.Errorf("store/mongo: audit: %w: sequence numbers kept being fenced off", store.ErrUnavailable)
		}
		if attempt > 0 {
			// Another process took the same numbers (FerretDB's $inc is not
			// atomic across processes) or a reader fenced them off: wait a
			// random moment so two writers retrying in step fall apart.
			if err := jitter(ctx, attempt); err != nil {
				return nil, s.fail("audit", err)
			}
		}
		if attempt > 0 || docs[pending[0]].Seq == 0 {
			first, err := s.allocate(ctx, len(pending))
			if err != nil {
				return nil, err
			}
			for k, i := range pending {
				docs[i].Seq = first + int64(k)
			}
		}
		batch := make([]any, len(pending))
		for k, i := range pending {
			batch[k] = &docs[i]
		}
		_, err := s.audit.InsertMany(ctx, batch, options.InsertMany().SetOrdered(false))
		if err == nil {
			return errs, nil
		}
		var bwe mongodrv.BulkWriteException
		if !errors.As(err, &bwe) || bwe.WriteConcernError != nil || len(bwe.WriteErrors) == 0 {
			return nil, s.fail("audit", err)
		}
		var retry []int
		for _, we := range bwe.WriteErrors {
			i := pending[we.Index]
			if !isDuplicate(we.WriteError) {
				errs[i] = s.fail("audit "+docs[i].ID, we.WriteError)
				continue
			}
			again, err := s.seqTaken(ctx, &docs[i])
			switch {
			case err != nil:
				return nil, err
			case again:
				retry = append(retry, i)
			default:
				errs[i] = fmt.Errorf("store/mongo: audit: %w: access record %s exists", store.ErrUnavailable, docs[i].ID)
			}
		}
		if len(retry) > 0 {
			if err := s.catchUpCounter(ctx); err != nil {
				return nil, err
			}
		}
		pending = retry
	}
	return errs, nil
}

// catchUpCounter raises the counter to the highest number stored. A counter
// behind the data (restored from an older backup than the records, or, on
// FerretDB, an increment lost between processes) would otherwise hand out
// taken numbers again and again.
func (s *Store) catchUpCounter(ctx context.Context) error {
	var top struct {
		Seq int64 `bson:"_id"`
	}
	err := s.audit.FindOne(ctx, bson.D{}, options.FindOne().SetSort(bson.D{{Key: "_id", Value: -1}}).SetProjection(bson.D{{Key: "_id", Value: 1}})).Decode(&top)
	if errors.Is(err, mongodrv.ErrNoDocuments) {
		return nil
	}
	if err == nil {
		_, err = s.meta.UpdateOne(ctx, bson.D{{Key: "_id", Value: seqCounter}}, bson.D{{Key: "$max", Value: bson.D{{Key: "seq", Value: top.Seq}}}})
	}
	if err != nil {
		return s.fail("catching up the sequence counter", err)
	}
	return nil
}

// seqTaken tells why doc's insert hit a unique index: its sequence number was
// taken (true: renumber it) or its caller-assigned id exists (false).
func (s *Store) seqTaken(ctx context.Context, doc *auditDoc) (bool, error) {
	err := s.audit.FindOne(ctx, bson.D{{Key: "id", Value: doc.ID}}, options.FindOne().SetProjection(bson.D{{Key: "_id", Value: 1}})).Err()
	switch {
	case errors.Is(err, mongodrv.ErrNoDocuments):
		return true, nil
	case err != nil:
		return false, s.fail("audit", err)
	}
	return false, nil
}

// allocate takes n consecutive sequence numbers and returns the first.
func (s *Store) allocate(ctx context.Context, n int) (int64, error) {
	if s.ferret {
		// FerretDB's $inc is a read then a write; in one process this makes it
		// atomic. (Across processes a duplicate number is still caught by the
		// _id index and renumbered.)
		s.alloc.Lock()
		defer s.alloc.Unlock()
	}
	var c struct {
		Seq int64 `bson:"seq"`
	}
	err := s.meta.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: seqCounter}},
		bson.D{{Key: "$inc", Value: bson.D{{Key: "seq", Value: int64(n)}}}},
		options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.After)).Decode(&c)
	if err != nil {
		return 0, s.fail("allocating sequence numbers", err)
	}
	return c.Seq - int64(n) + 1, nil
}

// horizon returns the highest sequence number h such that every number up
// to h is taken by a stored record or a fence marker, fencing off numbers
// that have been missing for longer than the grace.
func (s *Store) horizon(ctx context.Context) (int64, error) {
	h, err := s.savedHorizon(ctx)
	if err != nil {
		return 0, err
	}
	start := h
scan:
	for {
		cur, err := s.audit.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$gt", Value: h}}}},
			options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetProjection(bson.D{{Key: "_id", Value: 1}}).SetLimit(horizonScan))
		if err != nil {
			return 0, s.fail("reading the feed horizon", err)
		}
		var seqs []struct {
			Seq int64 `bson:"_id"`
		}
		if err := cur.All(ctx, &seqs); err != nil {
			return 0, s.fail("reading the feed horizon", err)
		}
		for _, x := range seqs {
			if x.Seq > h+1 {
				// A gap. Another process may have passed it already (and a
				// purge may have removed what was there since): start again
				// from the saved horizon if it is further on.
				saved, err := s.savedHorizon(ctx)
				if err != nil {
					return 0, err
				}
				if saved > h {
					h = saved
					continue scan
				}
			}
			for x.Seq > h+1 {
				ok, err := s.fence(ctx, h+1)
				if err != nil {
					return 0, err
				}
				if !ok {
					break scan
				}
				h++
			}
			h = x.Seq
		}
		if len(seqs) < horizonScan {
			break
		}
	}
	s.holes.Lock()
	for seq := range s.holes.seen {
		if seq <= h {
			delete(s.holes.seen, seq)
		}
	}
	s.holes.Unlock()
	if h > start {
		_, err := s.meta.UpdateOne(ctx, bson.D{{Key: "_id", Value: feedMark}},
			bson.D{{Key: "$max", Value: bson.D{{Key: "seq", Value: h}}}}, options.UpdateOne().SetUpsert(true))
		if err != nil && !mongodrv.IsDuplicateKeyError(err) {
			return 0, s.fail("saving the feed horizon", err)
		}
	}
	return h, nil
}

// savedHorizon is the highest horizon any process has saved.
func (s *Store) savedHorizon(ctx context.Context) (int64, error) {
	var mark struct {
		Seq int64 `bson:"seq"`
	}
	err := s.meta.FindOne(ctx, bson.D{{Key: "_id", Value: feedMark}}).Decode(&mark)
	if err != nil && !errors.Is(err, mongodrv.ErrNoDocuments) {
		return 0, s.fail("reading the feed horizon", err)
	}
	return mark.Seq, nil
}

// fence resolves a missing sequence number once it has been missing for the
// grace: true when the number is now taken, by its writer or by a marker.
func (s *Store) fence(ctx context.Context, seq int64) (bool, error) {
	now := time.Now()
	s.holes.Lock()
	first, ok := s.holes.seen[seq]
	if !ok {
		s.holes.seen[seq], first = now, now
	}
	s.holes.Unlock()
	if now.Sub(first) < s.opts.FeedHoleGrace {
		return false, nil
	}
	_, err := s.audit.InsertOne(ctx, auditDoc{Seq: seq, Recorded: now.UnixNano(), Fence: true})
	if err == nil || isDuplicate(err) {
		return true, nil
	}
	return false, s.fail("fencing off feed sequence number "+strconv.FormatInt(seq, 10), err)
}

// AuditBySubject returns the notifying access records about subject since a
// time, oldest first: one find on the subject_recorded index.
func (s *Store) AuditBySubject(ctx context.Context, subject string, since time.Time, limit int) ([]store.AuditRecord, error) {
	if err := s.broken(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	f := bson.D{{Key: "subject", Value: subject}, {Key: "notify", Value: true}}
	if !since.IsZero() {
		f = append(f, bson.E{Key: "recorded", Value: bson.D{{Key: "$gte", Value: since.UnixNano()}}})
	}
	var out []store.AuditRecord
	err := s.run(ctx, func(ctx context.Context) error {
		var err error
		// The newest limit, read newest first on the subject_recorded index.
		out, _, err = s.auditRecords(ctx, f, bson.D{{Key: "recorded", Value: -1}, {Key: "_id", Value: -1}}, limit)
		return err
	})
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, err
}

// AuditHeadsBySubject is AuditBySubject without bodies: the same find on
// subject_recorded, with the bodies and views projected out, so 2,000
// records cross the wire as about 100 KB, not 5 MB. (MongoDB cannot answer
// it from the index alone: owners is an array, and an index on an array
// field never covers a query.)
func (s *Store) AuditHeadsBySubject(ctx context.Context, subject string, since time.Time, limit int) ([]store.AuditRecord, error) {
	if err := s.broken(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	f := bson.D{{Key: "subject", Value: subject}, {Key: "notify", Value: true}}
	if !since.IsZero() {
		f = append(f, bson.E{Key: "recorded", Value: bson.D{{Key: "$gte", Value: since.UnixNano()}}})
	}
	var out []store.AuditRecord
	err := s.run(ctx, func(ctx context.Context) error {
		o := options.Find().SetSort(bson.D{{Key: "recorded", Value: -1}, {Key: "_id", Value: -1}}).SetLimit(int64(limit)).
			SetProjection(bson.D{{Key: "body", Value: 0}, {Key: "views", Value: 0}})
		var err error
		out, err = s.findAudit(ctx, f, o)
		return err
	})
	slices.Reverse(out)
	return out, err
}

// AuditBodies reads access records by sequence number (their _id): one find
// on the _id index.
func (s *Store) AuditBodies(ctx context.Context, seqs []int64) ([]store.AuditRecord, error) {
	if err := s.broken(); err != nil {
		return nil, err
	}
	if len(seqs) == 0 {
		return nil, nil
	}
	var found []store.AuditRecord
	err := s.run(ctx, func(ctx context.Context) error {
		var err error
		found, err = s.findAudit(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: seqs}}}, {Key: "fence", Value: bson.D{{Key: "$ne", Value: true}}}}, options.Find())
		return err
	})
	if err != nil {
		return nil, err
	}
	bySeq := make(map[int64]store.AuditRecord, len(found))
	for _, r := range found {
		bySeq[r.Seq] = r
	}
	out := make([]store.AuditRecord, 0, len(seqs))
	for _, q := range seqs {
		if r, ok := bySeq[q]; ok {
			out = append(out, r)
		}
	}
	return out, nil
}

func (s *Store) findAudit(ctx context.Context, f bson.D, o *options.FindOptionsBuilder) ([]store.AuditRecord, error) {
	cur, err := s.audit.Find(ctx, f, o)
	if err != nil {
		return nil, s.fail("reading access records", err)
	}
	var docs []auditDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, s.fail("reading access records", err)
	}
	out := make([]store.AuditRecord, 0, len(docs))
	for i := range docs {
		out = append(out, docs[i].record())
	}
	return out, nil
}

// AuditFeedTotal counts the records AuditFeed serves owner from since, up to
// the feed horizon, on owners_notify_recorded: the entries since the date.
func (s *Store) AuditFeedTotal(ctx context.Context, owner string, since time.Time) (int, error) {
	if err := s.broken(); err != nil {
		return 0, err
	}
	var n int64
	err := s.run(ctx, func(ctx context.Context) error {
		h, err := s.horizon(ctx)
		if err != nil {
			return err
		}
		from := int64(math.MinInt64)
		if !since.IsZero() {
			from = since.UnixNano()
		}
		f := bson.D{{Key: "owners", Value: owner}, {Key: "notify", Value: true},
			{Key: "recorded", Value: bson.D{{Key: "$gte", Value: from}}}, {Key: "_id", Value: bson.D{{Key: "$lte", Value: h}}}}
		n, err = s.audit.CountDocuments(ctx, f, options.Count().SetHint("owners_notify_recorded"))
		if err != nil {
			return s.fail("counting access records", err)
		}
		return nil
	})
	return int(n), err
}

func (s *Store) auditRecords(ctx context.Context, f, sort bson.D, limit int) ([]store.AuditRecord, int64, error) {
	o := options.Find().SetSort(sort)
	if limit > 0 {
		o.SetLimit(int64(limit))
	}
	cur, err := s.audit.Find(ctx, f, o)
	if err != nil {
		return nil, 0, s.fail("reading access records", err)
	}
	var docs []auditDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, 0, s.fail("reading access records", err)
	}
	var out []store.AuditRecord
	var last int64
	for i := range docs {
		out = append(out, docs[i].record())
		last = docs[i].Seq
	}
	return out, last, nil
}

// AuditFeed pages through the access records that touched owner's records,
// in sequence order up to the horizon (see the comment at the top).
func (s *Store) AuditFeed(ctx context.Context, owner string, since time.Time, cursor string, limit int) ([]store.AuditRecord, string, error) {
	if err := s.broken(); err != nil {
		return nil, "", err
	}
	after := int64(0)
	if cursor != "" {
		n, err := strconv.ParseInt(strings.TrimPrefix(cursor, "s"), 10, 64)
		if err != nil || !strings.HasPrefix(cursor, "s") || n < 0 {
			return nil, "", fmt.Errorf("store/mongo: %w", store.ErrInvalidCursor)
		}
		after = n
	}
	if limit == 0 {
		return nil, cursor, nil
	}
	var recs []store.AuditRecord
	var last int64
	err := s.run(ctx, func(ctx context.Context) error {
		h, err := s.horizon(ctx)
		if err != nil || h <= after {
			return err
		}
		// Start at the first record since the date (owners_notify_recorded,
		// the week's entries), not at the feed's start: on owners_seq the
		// page would pass over a year of older records to find a week's.
		if !since.IsZero() {
			first, err := s.firstSince(ctx, owner, since, h)
			if err != nil || first == 0 {
				return err
			}
			after = max(after, first-1)
		}
		f := bson.D{{Key: "owners", Value: owner}, {Key: "_id", Value: bson.D{{Key: "$gt", Value: after}, {Key: "$lte", Value: h}}}, {Key: "notify", Value: true}}
		if !since.IsZero() {
			f = append(f, bson.E{Key: "recorded", Value: bson.D{{Key: "$gte", Value: since.UnixNano()}}})
		}
		recs, last, err = s.auditRecords(ctx, f, bson.D{{Key: "_id", Value: 1}}, limit)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	if len(recs) == 0 {
		return nil, cursor, nil
	}
	return recs, "s" + strconv.FormatInt(last, 10), nil
}

// firstSince is the smallest sequence number up to h of owner's feed
// recorded at or after since, 0 if none.
func (s *Store) firstSince(ctx context.Context, owner string, since time.Time, h int64) (int64, error) {
	var doc struct {
		Seq int64 `bson:"_id"`
	}
	err := s.audit.FindOne(ctx, bson.D{{Key: "owners", Value: owner}, {Key: "notify", Value: true},
		{Key: "recorded", Value: bson.D{{Key: "$gte", Value: since.UnixNano()}}}, {Key: "_id", Value: bson.D{{Key: "$lte", Value: h}}}},
		options.FindOne().SetSort(bson.D{{Key: "_id", Value: 1}}).SetProjection(bson.D{{Key: "_id", Value: 1}}).SetHint("owners_notify_recorded")).Decode(&doc)
	if errors.Is(err, mongodrv.ErrNoDocuments) {
		return 0, nil
	}
	if err != nil {
		return 0, s.fail("reading the access feed", err)
	}
	return doc.Seq, nil
}

// purgeAudit removes access records recorded before cutoff about subjects
// with no remaining record, and fence markers no longer needed.
//
// Only records below the feed horizon are removed, so a purge never opens a
// gap the horizon has yet to pass (it would stall the feed for the grace).
// The horizon normally trails the newest record by milliseconds; a due record
// above it waits for the next purge.
//
// Unlike the SQLite store this is not one transaction: a record created for
// a subject between the check and the delete does not save that subject's
// access records from before the cutoff, which were due to go anyway.
func (s *Store) purgeAudit(ctx context.Context, cutoff time.Time) (int, error) {
	h, err := s.horizon(ctx)
	if err != nil {
		return 0, err
	}
	due := bson.D{
		{Key: "_id", Value: bson.D{{Key: "$lte", Value: h}}},
		{Key: "recorded", Value: bson.D{{Key: "$lt", Value: cutoff.UnixNano()}}},
	}
	records := append(slices.Clip(due), bson.E{Key: "fence", Value: bson.D{{Key: "$ne", Value: true}}})
	cur, err := s.audit.Aggregate(ctx, mongodrv.Pipeline{
		{{Key: "$match", Value: records}},
		{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$subject"}}}},
	})
	if err != nil {
		return 0, s.fail("purging access records", err)
	}
	var subjects []struct {
		Subject string `bson:"_id"`
	}
	if err := cur.All(ctx, &subjects); err != nil {
		return 0, s.fail("purging access records", err)
	}
	n := 0
	for _, sub := range subjects {
		err := s.res.FindOne(ctx, bson.D{{Key: "subject", Value: sub.Subject}}, options.FindOne().SetProjection(bson.D{{Key: "_id", Value: 1}})).Err()
		if err == nil {
			continue
		}
		if !errors.Is(err, mongodrv.ErrNoDocuments) {
			return n, s.fail("purging access records", err)
		}
		res, err := s.audit.DeleteMany(ctx, append(slices.Clip(records), bson.E{Key: "subject", Value: sub.Subject}))
		if err != nil {
			return n, s.fail("purging access records", err)
		}
		n += int(res.DeletedCount)
	}
	if _, err := s.audit.DeleteMany(ctx, append(slices.Clip(due), bson.E{Key: "fence", Value: true})); err != nil {
		return n, s.fail("purging fence markers", err)
	}
	return n, nil
}

// jitter sleeps a random time below 2^attempt milliseconds, or until ctx ends.
func jitter(ctx context.Context, attempt int) error {
	t := time.NewTimer(time.Duration(rand.Int64N(int64(time.Millisecond) << attempt)))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
