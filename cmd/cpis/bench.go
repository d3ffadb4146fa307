package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"cpis/cmd/cpis/internal/load"
	"cpis/handlers"
	"cpis/profiles"
	"cpis/store"
)

// benchFlags are cpis bench's own settings, besides the shared ones.
type benchFlags struct {
	target, scenarios, generator   string
	children, laCount, auditEvents int
	concurrency, transactions      int
	sweepAuditEvents               int
	duration, warmup               time.Duration
	keep, seeded, gzip             bool
}

func (f *benchFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&f.target, "target", "", "a running local-mode server (http://host:port, with the API's path if it is not CPIS_BASE_URL's: http://host:port/cpis/FHIR/R4), with --data-dir its data directory; default: start one")
	fs.IntVar(&f.children, "children", 100000, "synthetic children to seed before measuring (0: seed nothing); with --seeded, as many as the data directory was seeded with")
	fs.IntVar(&f.laCount, "la-count", 20, "local authorities the children are spread over")
	fs.IntVar(&f.auditEvents, "audit-events", 0, "access records (AuditEvents) to write over the year before, straight to the store")
	fs.IntVar(&f.concurrency, "concurrency", 32, "connections per scenario")
	fs.DurationVar(&f.duration, "duration", 10*time.Second, "how long each scenario runs (whole seconds with wrk)")
	fs.DurationVar(&f.warmup, "warmup", 2*time.Second, "unmeasured load before each scenario")
	fs.IntVar(&f.transactions, "transactions", 5, "1,000-entry transaction uploads to time, one at a time")
	fs.IntVar(&f.sweepAuditEvents, "sweep-audit-events", 0, "expired access records the sweep scenario loads for the server's sweeper (default: as many as --audit-events)")
	fs.StringVar(&f.scenarios, "scenarios", "", "comma-separated scenarios to run (default all): "+strings.Join(load.ScenarioNames(), ","))
	fs.StringVar(&f.generator, "generator", "", "load generator: wrk or go (default: wrk if it is on the PATH, else the Go client)")
	fs.BoolVar(&f.keep, "keep", false, "keep the temporary data directory")
	fs.BoolVar(&f.gzip, "gzip", false, "ask for gzip-compressed answers (Accept-Encoding: gzip); by default the load generators do not, as wrk does not")
	fs.BoolVar(&f.seeded, "seeded", false, "the data directory already holds this run's data (an earlier run's, kept with --keep): do not load it again")
}

// bench is the load command: it seeds a data directory in-process, starts
// the server on it from this executable and the bare gin ceiling in a
// process of its own, and measures (see package load). With --target it
// measures a running server instead, seeding it over HTTP.
func bench(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "ceiling" { // the ceiling's own process: cpis bench ceiling [addr]
		addr := "127.0.0.1:0"
		if len(args) > 1 {
			addr = args[1]
		}
		return load.ServeCeiling(ctx, addr, stdout)
	}
	var f benchFlags
	cfg, fs, err := loadConfigWith("bench", args, getenv, stdout, f.bind)
	if err != nil {
		return err
	}
	if f.concurrency < 1 || f.concurrency > 1024 || f.duration <= 0 || f.warmup < 0 || f.transactions < 0 ||
		f.children < 0 || f.children > load.MaxChildren || f.laCount < 1 || f.laCount > load.MaxLAs ||
		f.auditEvents < 0 || f.auditEvents > load.MaxAuditEvents || f.sweepAuditEvents < 0 || f.sweepAuditEvents > load.MaxAuditEvents {
		return badConfig("bench: --concurrency 1-1024, --duration > 0, --children 0-%d, --la-count 1-%d and --audit-events and --sweep-audit-events 0-%d", load.MaxChildren, load.MaxLAs, load.MaxAuditEvents)
	}
	if f.generator != "" && f.generator != "wrk" && f.generator != "go" {
		return badConfig("bench: --generator must be wrk or go")
	}
	if !cfg.localMode() {
		return badConfig("cpis bench works in local mode only: it mints its tokens with the local key; unset CPIS_JWKS_FILE and CPIS_JWKS_URL")
	}
	dirGiven := getenv("CPIS_DATA_DIR") != ""
	fs.Visit(func(fl *flag.Flag) { dirGiven = dirGiven || fl.Name == "data-dir" })
	// The API's path: the target's own (--target http://host:port/cpis/FHIR/R4),
	// else the path of CPIS_BASE_URL, as the server serves it.
	basePath, err := handlers.BasePath(cfg.BaseURL)
	if err != nil {
		return badConfig("CPIS_BASE_URL: %v", err)
	}
	if f.target != "" {
		u, err := url.Parse(f.target)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return badConfig("bench: --target must be http://host:port, optionally with the API's path, not %q", f.target)
		}
		if p := strings.TrimSuffix(u.EscapedPath(), "/"); p != "" {
			if basePath, err = handlers.BasePath(f.target); err != nil {
				return badConfig("bench: --target: %v", err)
			}
		}
		f.target = u.Scheme + "://" + u.Host
	}
	o := load.BenchOptions{Target: f.target, BasePath: basePath, DataDir: cfg.DataDir, Children: f.children, LACount: f.laCount, AuditEvents: f.auditEvents,
		Seeded: f.seeded, AsOf: time.Now().UTC().AddDate(0, 0, -1), Concurrency: f.concurrency, Duration: f.duration, Warmup: f.warmup,
		Transactions: f.transactions, Scenarios: f.scenarios, Generator: f.generator, Gzip: f.gzip, SweepAuditEvents: f.sweepAuditEvents,
		RetentionDays: cfg.RetentionDays, Issuer: cfg.Issuer, Audience: cfg.Audience}
	env := load.BenchEnv{Open: func(ctx context.Context) (store.Store, error) {
		return openStore(ctx, cfg, handlers.NewPrometheus(version), newLogger(stdout, "error"), false)
	}}
	if f.target != "" {
		if !dirGiven {
			return badConfig("bench: --target needs --data-dir, the target server's data directory, to mint tokens with its local key")
		}
		return load.Bench(ctx, o, env, stdout)
	}
	if !dirGiven {
		if cfg.DataDir, err = os.MkdirTemp("", "cpis-bench-"); err != nil {
			return err
		}
		o.DataDir = cfg.DataDir
		if !f.keep {
			defer os.RemoveAll(cfg.DataDir)
		}
	}
	if !f.seeded && f.children > 0 {
		if err := seedInto(ctx, cfg, load.SeedOptions{Children: f.children, LACount: f.laCount, Seed: 1, AsOf: o.AsOf,
			RetentionDays: cfg.RetentionDays, Batch: 1000, Workers: 2 * runtime.GOMAXPROCS(0), AuditEvents: f.auditEvents}, stdout); err != nil {
			return err
		}
		if err := sweepBacklog(ctx, cfg, stdout); err != nil {
			return err
		}
	}
	o.Seeded = true
	self, err := os.Executable()
	if err != nil {
		return err
	}
	env.Server = func(addr string) *exec.Cmd {
		// The server gets bench's whole configuration, flags included,
		// with its own address, data directory and base URL.
		cmd := exec.Command(self, "serve")
		cmd.Env = os.Environ()
		for _, s := range cfg.settings() {
			cmd.Env = append(cmd.Env, s.env+"="+*s.dst)
		}
		cmd.Env = append(cmd.Env, "CPIS_RETENTION_DAYS="+strconv.Itoa(cfg.RetentionDays),
			"CPIS_ADDR="+addr, "CPIS_DATA_DIR="+cfg.DataDir, "CPIS_BASE_URL=http://"+addr+basePath, "CPIS_LOG_LEVEL=info")
		return cmd
	}
	env.Ceiling = func(addr string) *exec.Cmd { return exec.Command(self, "bench", "ceiling", addr) }
	return load.Bench(ctx, o, env, stdout)
}

// sweepBacklog purges what the seed loaded already expired, as the
// server's first sweep would, so that sweep does not run during the
// measurements.
func sweepBacklog(ctx context.Context, cfg *config, stdout io.Writer) error {
	st, err := openStore(ctx, cfg, handlers.NewPrometheus(version), newLogger(stdout, "error"), false)
	if err != nil {
		return err
	}
	defer st.Close()
	t0 := time.Now()
	stats, err := st.Purge(ctx, profiles.RetainedSince(time.Now().UTC(), cfg.RetentionDays))
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "the expired backlog swept before the server starts: %d plans, %d access records, %s\n", stats.Records, stats.Audit, time.Since(t0).Round(time.Millisecond))
	return err
}
