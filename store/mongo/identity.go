package mongo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	mongodrv "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"cpis/store"
)

// The store's identity: a random id in the meta collection, written when
// the database is first used, and the same id in a marker file in the data
// directory (Options.MarkerDir). A marker with a dropped database (no id)
// or another database's id refuses the start; while running, a watcher
// re-reads the id, and a dropped database fails the store for good, so
// writes answer 503 instead of recreating an empty database.

const identityDoc = "store_identity"

// defaultWatchInterval is how often the identity is re-read.
const defaultWatchInterval = 5 * time.Second

// readID returns the database's store identity, "" if it has none.
func (s *Store) readID(ctx context.Context) (string, error) {
	var doc struct {
		ID string `bson:"id"`
	}
	err := s.meta.FindOne(ctx, bson.D{{Key: "_id", Value: identityDoc}}).Decode(&doc)
	if errors.Is(err, mongodrv.ErrNoDocuments) {
		return "", nil
	}
	if err != nil {
		return "", s.fail("reading the store identity", err)
	}
	return doc.ID, nil
}

// identify checks the database against the marker before anything is
// created in it, then creates the identity if the database has none.
func (s *Store) identify(ctx context.Context) error {
	var marker string
	if dir := s.opts.MarkerDir; dir != "" {
		var err error
		if marker, err = store.ReadMarker(dir); err != nil {
			return err
		}
	}
	what := "the MongoDB database " + s.db.Name()
	id, err := s.readID(ctx)
	if err != nil {
		return err
	}
	if err := store.CheckIdentity(s.opts.MarkerDir, marker, id, what, s.opts.ResetIdentity); err != nil {
		return err
	}
	if id == "" {
		fresh, err := store.NewStoreID()
		if err != nil {
			return err
		}
		// Two processes starting at once agree on the first id written.
		_, err = s.meta.UpdateOne(ctx, bson.D{{Key: "_id", Value: identityDoc}},
			bson.D{{Key: "$setOnInsert", Value: bson.D{{Key: "id", Value: fresh}}}}, options.UpdateOne().SetUpsert(true))
		if err != nil && !mongodrv.IsDuplicateKeyError(err) {
			return s.fail("writing the store identity", err)
		}
		if id, err = s.readID(ctx); err != nil {
			return err
		}
		if id == "" {
			return fmt.Errorf("store/mongo: %w: the store identity was written but cannot be read back", store.ErrUnavailable)
		}
	}
	s.id = id
	if s.opts.MarkerDir != "" && marker != id {
		if err := store.WriteMarker(s.opts.MarkerDir, id); err != nil {
			return err
		}
		s.log.Info("store identity recorded", slog.String("store_id", id), slog.Bool("reset", s.opts.ResetIdentity && marker != ""))
	}
	return nil
}

// ID is the store's identity.
func (s *Store) ID() string { return s.id }

// broken returns the error the store failed with, or nil.
func (s *Store) broken() error { return s.failure.Err() }

func (s *Store) failWith(why string) {
	if s.failure.Set("store/mongo", why) {
		s.log.Error("the store has failed and refuses every call", slog.String("reason", why))
	}
}

// watch re-reads the identity every interval until the store closes.
func (s *Store) watch() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.WatchInterval)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		id, err := s.readID(ctx)
		cancel()
		switch {
		case err != nil:
			// Unreachable is not dropped: calls fail on their own meanwhile.
		case id == "":
			s.failWith("the database no longer holds the store's identity (was it dropped?)")
			return
		case id != s.id:
			s.failWith("the database now holds store " + id + ", not the store opened (" + s.id + ")")
			return
		}
	}
}

// noteWrite records a refused write for readiness (see Ping).
func (s *Store) noteWrite(ctx context.Context, err error) {
	switch {
	case err == nil:
		s.lastWrite.Store(nil)
	case errors.Is(err, store.ErrUnavailable) && ctx.Err() == nil:
		s.lastWrite.Store(&err)
	}
}

// probe is a durable write of a heartbeat, with the write concern every
// write has.
func (s *Store) probe(ctx context.Context) error {
	_, err := s.meta.UpdateOne(ctx, bson.D{{Key: "_id", Value: "heartbeat"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "at", Value: time.Now().UTC()}}}}, options.UpdateOne().SetUpsert(true))
	if err != nil {
		return s.fail("readiness probe", err)
	}
	return nil
}
