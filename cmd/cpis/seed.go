package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime"
	"time"

	"cpis/cmd/cpis/internal/load"
	"cpis/handlers"
)

// seedFlags are cpis seed's own settings, besides the shared ones.
type seedFlags struct {
	children, laCount, batch, workers, auditEvents int
	seed                                           uint64
	asOf                                           string
}

func (f *seedFlags) bind(fs *flag.FlagSet) {
	fs.IntVar(&f.children, "children", 0, fmt.Sprintf("how many synthetic children to load (1 to %d)", load.MaxChildren))
	fs.IntVar(&f.laCount, "la-count", 20, fmt.Sprintf("how many local authorities they are spread over (1 to %d)", load.MaxLAs))
	fs.Uint64Var(&f.seed, "seed", 1, "random seed: the same seed (and as-of month) gives the same data")
	fs.StringVar(&f.asOf, "as-of", "", "date the plans are dated back from, YYYY-MM-DD (default: the first day of this month)")
	fs.IntVar(&f.batch, "batch", 1000, "entries per transaction Bundle")
	fs.IntVar(&f.workers, "workers", 2*runtime.GOMAXPROCS(0), "Bundles posted at once (while one is written the others are checked)")
	fs.IntVar(&f.auditEvents, "audit-events", 0, fmt.Sprintf("access records (AuditEvents) the year before the as-of date should hold, written straight to the store (0 to %d; a year of national access is about 10,000,000)", load.MaxAuditEvents))
}

// seed loads synthetic children through the upload path in-process, and
// access records about them through the store, into the data directory.
func seed(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	var f seedFlags
	cfg, _, err := loadConfigWith("seed", args, getenv, stdout, f.bind)
	if err != nil {
		return err
	}
	switch {
	case f.children < 1 || f.children > load.MaxChildren:
		return badConfig("seed: --children must be from 1 to %d", load.MaxChildren)
	case f.laCount < 1 || f.laCount > load.MaxLAs:
		return badConfig("seed: --la-count must be from 1 to %d", load.MaxLAs)
	case f.batch < 1 || f.batch > handlers.DefaultLimits().MaxBundleEntries:
		return badConfig("seed: --batch must be from 1 to %d", handlers.DefaultLimits().MaxBundleEntries)
	case f.workers < 1 || f.workers > 64:
		return badConfig("seed: --workers must be from 1 to 64")
	case f.auditEvents < 0 || f.auditEvents > load.MaxAuditEvents:
		return badConfig("seed: --audit-events must be from 0 to %d", load.MaxAuditEvents)
	}
	asOf := time.Now().UTC()
	asOf = time.Date(asOf.Year(), asOf.Month(), 1, 0, 0, 0, 0, time.UTC)
	if f.asOf != "" {
		if asOf, err = time.Parse("2006-01-02", f.asOf); err != nil {
			return badConfig("seed: --as-of must be a date, YYYY-MM-DD")
		}
	}
	if !cfg.localMode() {
		return badConfig("cpis seed loads demo data in local mode only: it signs its uploads with the local key, which a JWKS-configured server does not trust; unset CPIS_JWKS_FILE and CPIS_JWKS_URL")
	}
	return seedInto(ctx, cfg, load.SeedOptions{Children: f.children, LACount: f.laCount, Seed: f.seed, AsOf: asOf,
		RetentionDays: cfg.RetentionDays, Batch: f.batch, Workers: f.workers, AuditEvents: f.auditEvents}, stdout)
}

// seedInto builds the server as serve does and loads the data set into it.
func seedInto(ctx context.Context, cfg *config, o load.SeedOptions, stdout io.Writer) error {
	a, err := build(ctx, cfg, newLogger(stdout, "error"))
	if err != nil {
		return err
	}
	err = load.Seed(ctx, load.Target{Handler: a.handler, BaseURL: cfg.BaseURL, Store: a.store, Key: a.local, Issuer: cfg.Issuer, Audience: cfg.Audience}, o, stdout)
	if cerr := a.store.Close(); err == nil {
		err = cerr
	}
	if err != nil || cfg.MongoURI != "" {
		return err
	}
	_, err = fmt.Fprintf(stdout, "store: %s in %s (closed: the write-ahead log is copied back)\n", load.MB(load.DirSize(cfg.DataDir)), cfg.DataDir)
	return err
}
