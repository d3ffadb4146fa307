package main

import (
	"context"

	"cpis/store"
)

func openMongo(context.Context, *config) (store.Store, error) {
	return nil, badConfig("CPIS_MONGODB_URI: the MongoDB backend is not in this build yet")
}
