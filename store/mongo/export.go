package mongo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	mongodrv "go.mongodb.org/mongo-driver/v2/mongo"

	"cpis/store"
)

var _ store.Exporter = (*Store)(nil)

// Bulk export jobs live in two collections: exportsColl holds a document per
// job (_id "job:<id>", the job as JSON beside the fields queries need) and a
// lock per authority with a running job (_id "running:<ods>"), and
// exportChunksColl holds the files in chunks of exportChunk bytes (_id
// "<id>/<name>/<n>"). Everything is found by _id equality, which FerretDB
// pushes down to SQL, and made unique by _id alone: no transaction, no TTL,
// no GridFS is needed (FerretDB v1.24 has none of them reliably).
const (
	exportsColl      = "exports"
	exportChunksColl = "export_chunks"
	exportChunk      = 512 << 10
)

type exportDoc struct {
	ID      string    `bson:"_id"`
	Owner   string    `bson:"owner"`
	State   string    `bson:"state"`
	Beat    time.Time `bson:"beat"`
	Expires time.Time `bson:"expires"`
	Job     string    `bson:"job"`
}

type exportLock struct {
	ID  string `bson:"_id"`
	Job string `bson:"job"`
}

type exportChunkDoc struct {
	ID   string `bson:"_id"`
	Job  string `bson:"job"`
	Data []byte `bson:"data"`
}

func jobKey(id string) string   { return "job:" + id }
func lockKey(ods string) string { return "running:" + ods }
func chunkKey(id, name string, n int) string {
	return fmt.Sprintf("%s/%s/%08d", id, name, n)
}

func (s *Store) exportErr(op string, err error) error {
	if errors.Is(err, mongodrv.ErrNoDocuments) {
		return fmt.Errorf("store/mongo: %s: %w", op, store.ErrNotFound)
	}
	return s.fail(op, err)
}

// CreateExport takes the authority's lock (an insert keyed by its ODS
// code: only one process wins it), breaking a lock whose job is over or
// whose worker stopped beating, then stores the job.
func (s *Store) CreateExport(ctx context.Context, job store.ExportJob, staleBefore time.Time) (string, error) {
	if err := s.broken(); err != nil {
		return "", err
	}
	if err := store.CheckExportName(job.ID); err != nil {
		return "", err
	}
	body, err := json.Marshal(job)
	if err != nil {
		return "", fmt.Errorf("store/mongo: export %s: %w", job.ID, err)
	}
	ex := s.db.Collection(exportsColl)
	doc := exportDoc{ID: jobKey(job.ID), Owner: job.Owner, State: job.State, Beat: job.Beat, Expires: job.Expires, Job: string(body)}
	var busy string
	err = s.run(ctx, func(ctx context.Context) error {
		for attempt := 0; attempt < 3; attempt++ {
			_, err := ex.InsertOne(ctx, exportLock{ID: lockKey(job.Owner), Job: job.ID})
			if err == nil {
				_, err = ex.InsertOne(ctx, doc)
				if err != nil {
					ex.DeleteOne(ctx, bson.D{{Key: "_id", Value: lockKey(job.Owner)}, {Key: "job", Value: job.ID}})
					return s.fail("export: create", err)
				}
				return nil
			}
			if !isDuplicate(err) {
				return s.fail("export: lock", err)
			}
			var l exportLock
			if err := ex.FindOne(ctx, bson.D{{Key: "_id", Value: lockKey(job.Owner)}}).Decode(&l); err != nil {
				if errors.Is(err, mongodrv.ErrNoDocuments) {
					continue // released meanwhile
				}
				return s.fail("export: lock", err)
			}
			var d exportDoc
			err = ex.FindOne(ctx, bson.D{{Key: "_id", Value: jobKey(l.Job)}}).Decode(&d)
			if err != nil && !errors.Is(err, mongodrv.ErrNoDocuments) {
				return s.fail("export: lock", err)
			}
			if err == nil && d.State == store.ExportRunning && !d.Beat.Before(staleBefore) {
				busy = l.Job
				return nil
			}
			// The lock's job is gone, over, or lost its process.
			if _, err := ex.DeleteOne(ctx, bson.D{{Key: "_id", Value: lockKey(job.Owner)}, {Key: "job", Value: l.Job}}); err != nil {
				return s.fail("export: lock", err)
			}
		}
		return fmt.Errorf("store/mongo: export: %w: the authority's export lock kept changing", store.ErrUnavailable)
	})
	return busy, err
}

// Export returns a job.
func (s *Store) Export(ctx context.Context, id string) (store.ExportJob, error) {
	if err := s.broken(); err != nil {
		return store.ExportJob{}, err
	}
	var job store.ExportJob
	err := s.run(ctx, func(ctx context.Context) error {
		var d exportDoc
		if err := s.db.Collection(exportsColl).FindOne(ctx, bson.D{{Key: "_id", Value: jobKey(id)}}).Decode(&d); err != nil {
			return s.exportErr("export "+id, err)
		}
		if err := json.Unmarshal([]byte(d.Job), &job); err != nil {
			return fmt.Errorf("store/mongo: export %s: %w", id, err)
		}
		return nil
	})
	return job, err
}

// UpdateExport replaces a running job's document (ErrNotFound if it is gone
// or over); a job that is over releases its authority's lock.
func (s *Store) UpdateExport(ctx context.Context, job store.ExportJob) error {
	if err := s.broken(); err != nil {
		return err
	}
	body, err := json.Marshal(job)
	if err != nil {
		return fmt.Errorf("store/mongo: export %s: %w", job.ID, err)
	}
	ex := s.db.Collection(exportsColl)
	return s.run(ctx, func(ctx context.Context) error {
		res, err := ex.UpdateOne(ctx, bson.D{{Key: "_id", Value: jobKey(job.ID)}, {Key: "state", Value: store.ExportRunning}}, bson.D{{Key: "$set", Value: bson.D{
			{Key: "state", Value: job.State}, {Key: "beat", Value: job.Beat}, {Key: "job", Value: string(body)}}}})
		if err != nil {
			return s.fail("export: update", err)
		}
		if res.MatchedCount == 0 {
			return fmt.Errorf("store/mongo: export %s: %w", job.ID, store.ErrNotFound)
		}
		if job.State != store.ExportRunning {
			if _, err := ex.DeleteOne(ctx, bson.D{{Key: "_id", Value: lockKey(job.Owner)}, {Key: "job", Value: job.ID}}); err != nil {
				return s.fail("export: unlock", err)
			}
		}
		return nil
	})
}

// WriteExportFile stores r in chunks as it reads them.
func (s *Store) WriteExportFile(ctx context.Context, id, name string, r io.Reader) (int64, error) {
	if err := s.broken(); err != nil {
		return 0, err
	}
	if err := store.CheckExportName(id); err != nil {
		return 0, err
	}
	if err := store.CheckExportName(name); err != nil {
		return 0, err
	}
	chunks := s.db.Collection(exportChunksColl)
	buf := make([]byte, exportChunk)
	var size int64
	for n := 0; ; n++ {
		k, err := io.ReadFull(r, buf)
		if k > 0 {
			if _, ierr := chunks.InsertOne(ctx, exportChunkDoc{ID: chunkKey(id, name, n), Job: id, Data: buf[:k]}); ierr != nil {
				return size, s.fail("export: write chunk", ierr)
			}
			size += int64(k)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return size, nil
		}
		if err != nil {
			return size, fmt.Errorf("store/mongo: export %s/%s: %w", id, name, err)
		}
	}
}

// OpenExportFile reads a file a chunk at a time.
func (s *Store) OpenExportFile(ctx context.Context, id, name string) (io.ReadCloser, error) {
	if err := s.broken(); err != nil {
		return nil, err
	}
	if err := store.CheckExportName(id); err != nil {
		return nil, err
	}
	if err := store.CheckExportName(name); err != nil {
		return nil, err
	}
	cr := &chunkReader{ctx: ctx, s: s, id: id, name: name}
	if err := cr.next(); err != nil {
		return nil, err
	}
	return cr, nil
}

type chunkReader struct {
	ctx      context.Context
	s        *Store
	id, name string
	n        int
	cur      []byte
	eof      bool
}

// next loads chunk n; ErrNotFound for the first chunk means no file.
func (c *chunkReader) next() error {
	var d exportChunkDoc
	err := c.s.db.Collection(exportChunksColl).FindOne(c.ctx, bson.D{{Key: "_id", Value: chunkKey(c.id, c.name, c.n)}}).Decode(&d)
	if errors.Is(err, mongodrv.ErrNoDocuments) {
		if c.n == 0 {
			return fmt.Errorf("store/mongo: export %s/%s: %w", c.id, c.name, store.ErrNotFound)
		}
		c.eof = true
		return nil
	}
	if err != nil {
		return c.s.fail("export: read chunk", err)
	}
	c.cur = d.Data
	c.n++
	return nil
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for len(c.cur) == 0 {
		if c.eof {
			return 0, io.EOF
		}
		if err := c.next(); err != nil {
			return 0, err
		}
	}
	k := copy(p, c.cur)
	c.cur = c.cur[k:]
	return k, nil
}

func (c *chunkReader) Close() error { return nil }

// DeleteExport removes the job's document, its lock and its chunks.
func (s *Store) DeleteExport(ctx context.Context, id string) error {
	if err := s.broken(); err != nil {
		return err
	}
	ex := s.db.Collection(exportsColl)
	return s.run(ctx, func(ctx context.Context) error {
		var d exportDoc
		err := ex.FindOneAndDelete(ctx, bson.D{{Key: "_id", Value: jobKey(id)}}).Decode(&d)
		if err != nil && !errors.Is(err, mongodrv.ErrNoDocuments) {
			return s.fail("export: delete", err)
		}
		if err == nil {
			if _, err := ex.DeleteOne(ctx, bson.D{{Key: "_id", Value: lockKey(d.Owner)}, {Key: "job", Value: id}}); err != nil {
				return s.fail("export: unlock", err)
			}
		}
		if _, err := s.db.Collection(exportChunksColl).DeleteMany(ctx, bson.D{{Key: "job", Value: id}}); err != nil {
			return s.fail("export: delete chunks", err)
		}
		return nil
	})
}

// RemoveExportFiles removes the job's chunks.
func (s *Store) RemoveExportFiles(ctx context.Context, id string) error {
	if err := s.broken(); err != nil {
		return err
	}
	return s.run(ctx, func(ctx context.Context) error {
		if _, err := s.db.Collection(exportChunksColl).DeleteMany(ctx, bson.D{{Key: "job", Value: id}}); err != nil {
			return s.fail("export: delete chunks", err)
		}
		return nil
	})
}

// ExpiredExports lists the jobs that expired before t.
func (s *Store) ExpiredExports(ctx context.Context, t time.Time) ([]string, error) {
	if err := s.broken(); err != nil {
		return nil, err
	}
	var ids []string
	err := s.run(ctx, func(ctx context.Context) error {
		cur, err := s.db.Collection(exportsColl).Find(ctx, bson.D{{Key: "expires", Value: bson.D{{Key: "$lt", Value: t}}}})
		if err != nil {
			return s.fail("export: expired", err)
		}
		defer cur.Close(ctx)
		for cur.Next(ctx) {
			var d exportDoc
			if err := cur.Decode(&d); err != nil {
				return s.fail("export: expired", err)
			}
			ids = append(ids, d.ID[len("job:"):])
		}
		return cur.Err()
	})
	return ids, err
}
