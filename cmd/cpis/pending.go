package main

import (
	"context"
	"io"

	"cpis/handlers"
	"cpis/store"
)

func openMongo(context.Context, *config, *handlers.Prometheus) (store.Store, error) {
	return nil, badConfig("CPIS_MONGODB_URI: the MongoDB backend is not in this build yet")
}

func seed(context.Context, []string, func(string) string, io.Writer) error {
	return badConfig("seed: not in this build yet")
}
