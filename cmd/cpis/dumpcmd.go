package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"cpis/cmd/cpis/internal/load"
	"cpis/store"
	"cpis/store/dumpfile"
	"cpis/store/mongo"
	"cpis/store/sqlite"
)

// target names a store on the command line: sqlite:DIR or a MongoDB URI.
type target struct {
	dir      string // sqlite:DIR
	uri, db  string // MongoDB
	markerIn string // the data directory whose marker names the store
}

func (t target) String() string {
	if t.uri != "" {
		return "MongoDB database " + t.db
	}
	return "the embedded store in " + t.dir
}

func (t target) backend() string {
	if t.uri != "" {
		return "mongodb"
	}
	return "sqlite"
}

// configured is the store the shared configuration names.
func configured(cfg *config) target {
	if cfg.MongoURI != "" {
		return target{uri: cfg.MongoURI, db: cfg.MongoDatabase, markerIn: cfg.DataDir}
	}
	return target{dir: cfg.DataDir, markerIn: cfg.DataDir}
}

func parseTarget(flagName, v string, cfg *config) (target, error) {
	switch {
	case strings.HasPrefix(v, "sqlite:") && len(v) > len("sqlite:"):
		dir := strings.TrimPrefix(v, "sqlite:")
		return target{dir: dir, markerIn: dir}, nil
	case strings.HasPrefix(v, "mongodb://") || strings.HasPrefix(v, "mongodb+srv://"):
		return target{uri: v, db: cfg.MongoDatabase, markerIn: cfg.DataDir}, nil
	}
	return target{}, badConfig("migrate: --%s must be sqlite:DIR or a mongodb:// URI", flagName)
}

// openSource opens a store to read, checked against its data directory's
// marker like a server would.
func openSource(ctx context.Context, t target, log *slog.Logger) (store.Store, error) {
	if t.uri != "" {
		s, err := mongo.Open(ctx, t.uri, t.db, mongo.Options{Log: log, MarkerDir: t.markerIn})
		if err != nil {
			return nil, fmt.Errorf("opening %s: %w", t, err)
		}
		return s, nil
	}
	s, err := sqlite.Open(t.dir, sqlite.Options{Log: log})
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", t, err)
	}
	return s, nil
}

// openTarget opens a store to load. A MongoDB target is opened without
// its marker: the data directory is pointed at it (writeMarker) only once
// the load is verified. An embedded one is created in its directory; with
// force, a database the directory's marker does not name is accepted.
func openTarget(ctx context.Context, t target, force bool, log *slog.Logger) (store.Store, error) {
	if t.uri != "" {
		s, err := mongo.Open(ctx, t.uri, t.db, mongo.Options{Log: log})
		if err != nil {
			return nil, fmt.Errorf("opening %s: %w", t, err)
		}
		return s, nil
	}
	s, err := sqlite.Open(t.dir, sqlite.Options{Log: log, ResetIdentity: force})
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", t, err)
	}
	return s, nil
}

// pointMarker makes the target's data directory name the loaded store, so
// a server configured for it starts on it (and one configured for the old
// store refuses to start on that).
func pointMarker(t target, s store.Store, log *slog.Logger) error {
	if t.uri == "" || t.markerIn == "" {
		return nil
	}
	id := s.(interface{ ID() string }).ID()
	if err := store.WriteMarker(t.markerIn, id); err != nil {
		return err
	}
	log.Info("store identity recorded", slog.String("store_id", id), slog.String("data_dir", t.markerIn))
	return nil
}

// bar is the progress bar of a dump or load, on stdout.
func bar(out io.Writer, total int64, what string) (func(), func()) {
	b := load.ProgressBar(out, total, what, "records")
	return func() { b.Add(1) }, func() { b.Finish() }
}

// exportCommand is `cpis export --out DIR`: the configured store, whole, to
// NDJSON files with a manifest.
func exportCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	var out string
	var gz bool
	cfg, _, err := loadConfigWith("export", args, getenv, stdout, func(fs *flag.FlagSet) {
		fs.StringVar(&out, "out", "", "directory to write the dump to (new or empty)")
		fs.BoolVar(&gz, "gzip", true, "compress the NDJSON files")
	})
	if err != nil {
		return err
	}
	if out == "" {
		return badConfig("export: --out DIR is required")
	}
	log := newLogger(stdout, cfg.LogLevel)
	src := configured(cfg)
	s, err := openSource(ctx, src, log)
	if err != nil {
		return err
	}
	defer s.Close()
	tick, done := bar(stdout, -1, "export")
	start := time.Now()
	m, err := dumpfile.Write(ctx, out, s.(store.Dumper), dumpfile.Options{Gzip: gz, Progress: tick, Source: src.backend()})
	done()
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	log.Info("exported", slog.String("dir", out), slog.Int64("records", m.Items()), slog.Duration("took", time.Since(start)))
	return report(stdout, "exported", m.Summary, time.Since(start))
}

// importCommand is `cpis import --in DIR [--force]`: a dump into the
// configured store, which must be empty unless --force.
func importCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	var in string
	var force bool
	cfg, _, err := loadConfigWith("import", args, getenv, stdout, func(fs *flag.FlagSet) {
		fs.StringVar(&in, "in", "", "directory of the dump (written by cpis export)")
		fs.BoolVar(&force, "force", false, "load even into a store that already holds records (no verification of the whole store afterwards)")
	})
	if err != nil {
		return err
	}
	if in == "" {
		return badConfig("import: --in DIR is required")
	}
	log := newLogger(stdout, cfg.LogLevel)
	m, err := dumpfile.Verify(in)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	dst := configured(cfg)
	s, err := openTarget(ctx, dst, force, log)
	if err != nil {
		return err
	}
	defer s.Close()
	tick, done := bar(stdout, m.Items(), "import")
	start := time.Now()
	_, err = dumpfile.Load(ctx, in, s, force, dumpfile.Options{Progress: tick})
	done()
	if err != nil {
		return loadFailed("import", dst, err)
	}
	if err := pointMarker(dst, s, log); err != nil {
		return err
	}
	log.Info("imported", slog.String("dir", in), slog.Int64("records", m.Items()), slog.Duration("took", time.Since(start)))
	return report(stdout, "imported and verified", m.Summary, time.Since(start))
}

// migrateCommand is `cpis migrate --from STORE --to STORE`: one store
// streamed into another, then verified.
func migrateCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	var from, to string
	var force bool
	cfg, _, err := loadConfigWith("migrate", args, getenv, stdout, func(fs *flag.FlagSet) {
		fs.StringVar(&from, "from", "", "the store to read: sqlite:DIR or a mongodb:// URI")
		fs.StringVar(&to, "to", "", "the store to load: sqlite:DIR or a mongodb:// URI (database: --mongodb-database)")
		fs.BoolVar(&force, "force", false, "load even into a store that already holds records (no verification of the whole store afterwards)")
	})
	if err != nil {
		return err
	}
	if from == "" || to == "" {
		return badConfig("migrate: --from and --to are required")
	}
	src, err := parseTarget("from", from, cfg)
	if err != nil {
		return err
	}
	dst, err := parseTarget("to", to, cfg)
	if err != nil {
		return err
	}
	if src == dst {
		return badConfig("migrate: --from and --to name the same store")
	}
	log := newLogger(stdout, cfg.LogLevel)
	a, err := openSource(ctx, src, log)
	if err != nil {
		return err
	}
	defer a.Close()
	b, err := openTarget(ctx, dst, force, log)
	if err != nil {
		return err
	}
	defer b.Close()
	tick, done := bar(stdout, -1, "migrate")
	start := time.Now()
	sum, err := dumpfile.Migrate(ctx, a, b, force, dumpfile.Options{Progress: tick})
	done()
	if err != nil {
		return loadFailed("migrate", dst, err)
	}
	if err := pointMarker(dst, b, log); err != nil {
		return err
	}
	log.Info("migrated", slog.String("from", src.String()), slog.String("to", dst.String()), slog.Int64("records", sum.Items()), slog.Duration("took", time.Since(start)))
	return report(stdout, "migrated and verified", sum, time.Since(start))
}

func loadFailed(cmd string, dst target, err error) error {
	if errors.Is(err, dumpfile.ErrNotEmpty) {
		return fmt.Errorf("%s: %s already holds records; nothing was loaded (use --force to load anyway)", cmd, dst)
	}
	return fmt.Errorf("%s: %w; %s may hold part of the data: do not start a server on it, empty it and run again", cmd, err, dst)
}

func report(out io.Writer, what string, s dumpfile.Summary, took time.Duration) error {
	n := s.Items()
	rate := float64(n) / took.Seconds()
	if _, err := fmt.Fprintf(out, "%s %d records in %s (%.0f/s)\n", what, n, took.Round(time.Millisecond), rate); err != nil {
		return err
	}
	for typ, t := range s.Types {
		if _, err := fmt.Fprintf(out, "  %s: %d records, %d versions, sha256 %s\n", typ, t.Records, t.Versions, t.SHA256); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(out, "  feed sequence mark: %d\n", s.AuditSeq)
	return err
}
