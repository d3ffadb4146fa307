package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"cpis/handlers"
)

// storeCommand is `cpis store init [--force]`: it opens the configured
// store, creating it if the data directory is new. With --force it accepts
// the database found as the data directory's store even when the server
// refuses to start on it (store.ErrStoreIdentity): the explicit operator
// step that lets a deployment that has held records start empty.
func storeCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "init" {
		return badConfig("usage: cpis store init [--force] [flags]")
	}
	var force bool
	cfg, _, err := loadConfigWith("store init", args[1:], getenv, stdout, func(fs *flag.FlagSet) {
		fs.BoolVar(&force, "force", false, "accept the database found (missing, empty or another store's) as this server's store")
	})
	if err != nil {
		return err
	}
	log := newLogger(stdout, cfg.LogLevel)
	st, err := openStore(ctx, cfg, handlers.NewPrometheus(version), log, force)
	if err != nil {
		return err
	}
	if err := st.Close(); err != nil {
		return err
	}
	log.Info("store ready", slog.String("store", storeName(cfg)), slog.Bool("forced", force))
	_, err = fmt.Fprintln(stdout, "store ready")
	return err
}
