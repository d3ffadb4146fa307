package main

import (
	"context"
	"fmt"
	"log/slog"

	"cpis/handlers"
	"cpis/store"
	"cpis/store/mongo"
)

// openMongo opens the MongoDB backend named by CPIS_MONGODB_URI.
func openMongo(ctx context.Context, cfg *config, m *handlers.Prometheus, log *slog.Logger, reset bool) (store.Store, error) {
	s, err := mongo.Open(ctx, cfg.MongoURI, cfg.MongoDatabase, mongo.Options{BatchObserver: m.GroupCommit, Log: log, MarkerDir: cfg.DataDir, ResetIdentity: reset})
	if err != nil {
		return nil, fmt.Errorf("CPIS_MONGODB_URI: cannot use MongoDB: %w", err)
	}
	return s, nil
}
