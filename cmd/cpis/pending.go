package main

import (
	"context"
	"fmt"
	"io"

	"cpis/handlers"
	"cpis/store"
	"cpis/store/mongo"
)

// openMongo opens the MongoDB backend named by CPIS_MONGODB_URI.
func openMongo(ctx context.Context, cfg *config, m *handlers.Prometheus) (store.Store, error) {
	s, err := mongo.Open(ctx, cfg.MongoURI, cfg.MongoDatabase, mongo.Options{BatchObserver: m.GroupCommit})
	if err != nil {
		return nil, fmt.Errorf("CPIS_MONGODB_URI: cannot use MongoDB: %w", err)
	}
	return s, nil
}

func seed(context.Context, []string, func(string) string, io.Writer) error {
	return badConfig("seed: not in this build yet")
}
