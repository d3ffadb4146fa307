package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"time"

	"cpis/auth"
	"cpis/cmd/cpis/internal/logsink"
	"cpis/fhir"
	"cpis/handlers"
	"cpis/handlers/notify"
	"cpis/handlers/registry"
	"cpis/profiles"
	"cpis/store"
	"cpis/store/observed"
	"cpis/store/sqlite"
)

// app is the wired server: everything serve needs, built from config.
type app struct {
	cfg      *config
	log      *slog.Logger
	store    store.Store
	verifier *auth.Verifier
	local    *auth.LocalKey // nil unless in local mode
	handler  http.Handler
	// notify delivers notifications to local authorities (nil if the
	// store keeps no subscriptions).
	notify *notify.Service
	// quality refreshes the data-quality gauges (CPIS_DQ_REFRESH).
	quality *handlers.QualitySweep
}

func newLogger(out io.Writer, level string) *slog.Logger {
	return slog.New(jsonHandler(out, level))
}

func jsonHandler(out io.Writer, level string) slog.Handler {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.NewJSONHandler(out, &slog.HandlerOptions{Level: l})
}

// logFlushEvery bounds how long the server's request log lines wait in
// their buffer (see package logsink).
const logFlushEvery = 100 * time.Millisecond

// openStore opens the configured backend, with its calls timed for metrics.
// reset accepts the database found as the data directory's store (cpis
// store init --force); without it, a database that is not the store the
// data directory has held stops the start (store.ErrStoreIdentity).
func openStore(ctx context.Context, cfg *config, m *handlers.Prometheus, log *slog.Logger, reset bool) (store.Store, error) {
	var s store.Store
	var err error
	if cfg.MongoURI != "" {
		s, err = openMongo(ctx, cfg, m, log, reset)
	} else {
		s, err = sqlite.Open(cfg.DataDir, sqlite.Options{BatchObserver: m.GroupCommit, Log: log, ResetIdentity: reset})
		if err != nil {
			err = fmt.Errorf("opening the embedded store in %s: %w", cfg.DataDir, err)
		}
	}
	if err != nil {
		return nil, err
	}
	return observed.Wrap(s, m.StoreCall), nil
}

// keySource returns the trusted token keys: the JWKS, or in local mode the
// server's own key (created on first start).
func keySource(ctx context.Context, cfg *config, log *slog.Logger) (auth.KeySource, *auth.LocalKey, error) {
	switch {
	case cfg.JWKSFile != "":
		k, err := auth.FileKeys(cfg.JWKSFile, auth.KeyOptions{})
		if err != nil {
			return nil, nil, badConfig("CPIS_JWKS_FILE: %v", err)
		}
		return k, nil, nil
	case cfg.JWKSURL != "":
		k, err := auth.URLKeys(ctx, cfg.JWKSURL, auth.KeyOptions{})
		if err != nil {
			log.Warn("the JWKS could not be fetched at start-up; tokens are refused with 503 until it can be", slog.String("setting", "CPIS_JWKS_URL"))
		}
		return k, nil, nil
	}
	k, created, err := auth.LoadOrCreateLocalKey(cfg.DataDir)
	if err != nil {
		return nil, nil, err
	}
	log.Warn("LOCAL MODE: no JWKS is configured, so this server trusts only tokens it issues itself with `cpis token`; configure CPIS_JWKS_URL or CPIS_JWKS_FILE for production",
		slog.String("key_file", filepath.Join(cfg.DataDir, auth.LocalKeyFile)), slog.Bool("key_created", created), slog.String("kid", k.KID()))
	return k.Keys(), k, nil
}

// subjectKey is the secret that keys NHS-number hashes in the security log,
// kept in the data directory. It is written to a temporary file and linked
// into place, so the key file always holds the whole key, and processes
// starting at once all use the one that was linked first. A key file that is
// not 32 bytes stops start-up: an empty key would make the hash unkeyed, and
// NHS numbers could be recovered from the log by trying every valid one.
func subjectKey(dir string) ([]byte, error) {
	return dataKey(dir, "log-hash.key", "the security-log key")
}

// cursorKey is the secret that seals paging cursors (handlers.Deps.CursorKey),
// kept in the data directory and made like the security-log key. Removing
// it only invalidates the paging links already handed out.
func cursorKey(dir string) ([]byte, error) {
	return dataKey(dir, "cursor.key", "the paging-cursor key")
}

// dataKey reads the 32-byte secret in the data directory's file name,
// creating it on first start.
func dataKey(dir, name, what string) ([]byte, error) {
	path := filepath.Join(dir, name)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		b, err = createDataKey(dir, path)
	}
	if err != nil {
		return nil, badConfig("CPIS_DATA_DIR: %s: %v", what, err)
	}
	if len(b) != subjectKeySize {
		return nil, badConfig("CPIS_DATA_DIR: %s %s holds %d bytes, not %d; remove it to have a new one made", what, path, len(b), subjectKeySize)
	}
	return b, nil
}

const subjectKeySize = 32

// createDataKey makes a new key at path (mode 0600), or reads the one
// another process linked there first.
func createDataKey(dir, path string) ([]byte, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	b := make([]byte, subjectKeySize)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+"-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	switch err := os.Link(f.Name(), path); {
	case errors.Is(err, os.ErrExist):
		return os.ReadFile(path)
	case err != nil:
		// A file system without hard links: rename, which is atomic too
		// (a process racing this one may then keep another key until it
		// restarts, which costs only the correlation of its log lines).
		if err := os.Rename(f.Name(), path); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// build wires the server from configuration.
func build(ctx context.Context, cfg *config, log *slog.Logger) (*app, error) {
	rbac := auth.DefaultRBAC()
	if cfg.RBACFile != "" {
		var err error
		if rbac, err = auth.LoadRBAC(cfg.RBACFile); err != nil {
			return nil, badConfig("CPIS_RBAC_FILE: %v", err)
		}
	}
	keys, local, err := keySource(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	verifier, err := auth.NewVerifier(auth.Config{Keys: keys, Issuer: cfg.Issuer, Audience: cfg.Audience, RBAC: rbac, MaxLifetime: cfg.MaxTokenLifetime})
	if err != nil {
		return nil, err
	}
	codec, err := fhir.NewCodec()
	if err != nil {
		return nil, err
	}
	london, err := time.LoadLocation("Europe/London")
	if err != nil {
		return nil, err
	}
	hashKey, err := subjectKey(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	pagingKey, err := cursorKey(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	metrics := handlers.NewPrometheus(version)
	st, err := openStore(ctx, cfg, metrics, log, false)
	if err != nil {
		return nil, err
	}
	// A silent read's line is out before its answer is sent; a line that
	// could not be written is counted.
	securityLog := slog.New(metrics.SecurityLog(logsink.Immediate(log.Handler()))).With(slog.String("log", "security"))
	svc, err := newNotify(cfg, st, metrics, london, log, securityLog, hashKey)
	if err != nil {
		st.Close()
		return nil, err
	}
	deps := handlers.Deps{
		Store: st, Codec: codec, Verifier: verifier, Log: log,
		SecurityLog: securityLog, SubjectKey: hashKey, CursorKey: pagingKey,
		BaseURL: cfg.BaseURL, CORSOrigins: cfg.CORSOrigins, RequestTimeout: cfg.RequestTimeout,
		Location: london, RetentionDays: cfg.RetentionDays, Quality: cfg.Quality, QualityMaxPerRule: cfg.QualityMaxPerRule, ExportExpiry: cfg.ExportExpiry,
		LocalMode: local != nil, Version: version,
		Metrics: metrics, MetricsHandler: metrics.Handler(),
		Notify: svc,
	}
	h, err := handlers.New(deps)
	if err != nil {
		st.Close()
		return nil, err
	}
	qs, err := handlers.NewQualitySweep(deps, metrics)
	if err != nil {
		st.Close()
		return nil, err
	}
	return &app{cfg: cfg, log: log, store: st, verifier: verifier, local: local, handler: h, notify: svc, quality: qs}, nil
}

// newNotify builds the delivery of notifications to local authorities: it
// reads the authorities' feeds through a registry of its own over the same
// store (the events are exactly the feed), and runs in the background of
// serve, never on a request's path.
func newNotify(cfg *config, st store.Store, metrics *handlers.Prometheus, london *time.Location, log, securityLog *slog.Logger, hashKey []byte) (*notify.Service, error) {
	if _, ok := st.(store.Subscriptions); !ok {
		return nil, nil
	}
	feed, err := registry.New(registry.Config{Store: st, Location: london, RetentionDays: cfg.RetentionDays,
		Log: log, SecurityLog: securityLog, SubjectKey: hashKey})
	if err != nil {
		return nil, err
	}
	return notify.New(notify.Config{Store: st, Feed: feed, BaseURL: cfg.BaseURL, Log: log.With(slog.String("log", "notify")),
		Metrics: metrics.NotifyMetrics(), Poll: cfg.NotifyPoll, AttemptTimeout: cfg.NotifyAttemptTimeout,
		RetryMax: cfg.NotifyRetryMax, ErrorAfter: cfg.NotifyErrorAfter, ErrorAttempts: cfg.NotifyErrorAttempts, Lease: cfg.NotifyLease,
		InternalHosts: cfg.NotifyInternalHosts, MaxPerLA: cfg.NotifyMaxPerLA})
}

// serve runs the server until ctx is done, then shuts down gracefully.
func serve(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cfg, _, err := loadConfig("serve", args, getenv, stdout)
	if err != nil {
		return err
	}
	// Request log lines are buffered (a write(2) per request was a tenth
	// of a silent search's CPU); warnings, errors and the security log
	// are written at once, in order.
	sink := logsink.New(stdout, logFlushEvery)
	defer sink.Close()
	log := slog.New(sink.Handler(jsonHandler(sink, cfg.LogLevel), slog.LevelWarn))
	a, err := build(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.store.Close()

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return badConfig("CPIS_ADDR: cannot listen on %s: %v", cfg.Addr, err)
	}
	srv := &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    handlers.ServerMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	sweepCtx, stopSweep := context.WithCancel(ctx)
	defer stopSweep()
	go sweep(sweepCtx, a.store, cfg.RetentionDays, time.Hour, log)
	notifyDone := make(chan struct{})
	if a.notify != nil {
		go func() { defer close(notifyDone); a.notify.Run(sweepCtx) }()
	} else {
		close(notifyDone)
	}
	qualityDone := make(chan struct{})
	if cfg.QualityRefresh > 0 {
		go func() { a.quality.Run(sweepCtx, cfg.QualityRefresh); close(qualityDone) }()
	} else {
		close(qualityDone)
	}
	// The refresh stops before the store closes (deferred above, so run after).
	defer func() { stopSweep(); <-qualityDone }()

	if cfg.DebugAddr != "" {
		stopDebug, err := debugServer(cfg.DebugAddr, log)
		if err != nil {
			return err
		}
		defer stopDebug()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("listening", slog.String("addr", ln.Addr().String()), slog.String("base_url", cfg.BaseURL), slog.Int("cors_origins", len(cfg.CORSOrigins)),
		slog.String("store", storeName(cfg)), slog.Bool("local_mode", a.local != nil), slog.String("version", version))

	select {
	case err := <-errc:
		return fmt.Errorf("server stopped: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stopSweep()
	<-notifyDone // attempts in flight end with the delivery's context
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

func storeName(cfg *config) string {
	if cfg.MongoURI != "" {
		return "mongodb"
	}
	return "sqlite"
}

// firstSweep is how soon after start-up the first sweep runs.
const firstSweep = 2 * time.Second

// sweep purges expired plans and their access history now and then every
// interval. Several processes may sweep one store at once.
func sweep(ctx context.Context, st store.Store, days int, every time.Duration, log *slog.Logger) {
	t := time.NewTimer(firstSweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cutoff := profiles.RetainedSince(time.Now().UTC(), days)
		t0 := time.Now()
		stats, err := st.Purge(ctx, cutoff)
		if err != nil {
			if ctx.Err() == nil {
				log.Error("retention sweep failed", slog.String("error", err.Error()))
			}
		} else if stats.Records > 0 || stats.Audit > 0 {
			log.Info("retention sweep", slog.Int("records_purged", stats.Records), slog.Int("access_records_purged", stats.Audit), slog.Duration("took", time.Since(t0)))
		}
		if ss, ok := st.(store.Subscriptions); ok {
			// Subscriptions' outbox rows the endpoint acknowledged, once
			// older than the access records' retention.
			n, err := ss.PruneSubEvents(ctx, cutoff)
			if err != nil && ctx.Err() == nil {
				log.Error("notification outbox sweep failed", slog.String("error", err.Error()))
			} else if n > 0 {
				log.Info("notification outbox sweep", slog.Int("events_pruned", n))
			}
		}
		if ex, ok := st.(store.Exporter); ok {
			// Expired bulk exports and their files (a kick-off sweeps too).
			n, err := registry.SweepExports(ctx, ex, time.Now().UTC())
			if err != nil && ctx.Err() == nil {
				log.Error("export sweep failed", slog.String("error", err.Error()))
			} else if n > 0 {
				log.Info("export sweep", slog.Int("exports_removed", n))
			}
		}
		t.Reset(every)
	}
}

// debugServer serves Go's pprof profiles on a loopback address of its own,
// away from the API.
func debugServer(addr string, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, badConfig("CPIS_DEBUG_ADDR: cannot listen on %s: %v", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	log.Info("serving pprof profiles", slog.String("addr", ln.Addr().String()))
	return func() { srv.Close() }, nil
}
