package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"time"

	"cpis/store"
)

// The store's identity: a random id written inside the database when it is
// created (meta.store_id) and in a marker file beside it (store.MarkerFile).
// At Open a marker with a missing, empty or different database refuses the
// start; while running, a watcher checks the path still names the file
// opened, the files are writable and the id inside is the one opened. Any
// mismatch fails the store for good: every call answers ErrUnavailable,
// so the server answers 503 rather than writing records nobody will find.

// defaultWatchInterval is how often the watcher checks the database file.
const defaultWatchInterval = 2 * time.Second

// checkFilesBeforeOpen refuses to open a database whose files this process
// cannot write. SQLite maps the -shm file into memory; an -shm the process
// cannot write ends the process with SIGBUS on the first access.
func checkFilesBeforeOpen(path string) error {
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := writable(p); err != nil {
			return err
		}
	}
	return nil
}

// writable reports a file that exists and cannot be written by this
// process. It asks access(2) and never opens the file: opening and closing
// a database file would drop the process's SQLite locks on it.
func writable(p string) error {
	if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := syscall.Access(p, 2 /* W_OK */); err != nil {
		return fmt.Errorf("store/sqlite: %s is not writable by this process: %v", p, err)
	}
	return nil
}

// storeID returns the id inside the database, creating it if the database
// has none and create is set.
func storeID(db *sql.DB, create bool) (string, error) {
	var id string
	err := db.QueryRow(`SELECT value FROM meta WHERE key = 'store_id'`).Scan(&id)
	if err == nil || !errors.Is(err, sql.ErrNoRows) {
		return id, err
	}
	if !create {
		return "", nil
	}
	id, err = store.NewStoreID()
	if err != nil {
		return "", err
	}
	if _, err := db.Exec(`INSERT OR IGNORE INTO meta(key, value) VALUES ('store_id', ?)`, id); err != nil {
		return "", err
	}
	err = db.QueryRow(`SELECT value FROM meta WHERE key = 'store_id'`).Scan(&id)
	return id, err
}

// ID is the store's identity.
func (s *Store) ID() string { return s.id }

// broken returns the error the store failed with, or nil.
func (s *Store) broken() error { return s.failure.Err() }

// failWith fails the store for good, logging why once.
func (s *Store) failWith(why string) {
	if s.failure.Set("store/sqlite", why) {
		s.log.Error("the store has failed and refuses every call", slog.String("path", s.path), slog.String("reason", why))
	}
}

// watch checks the database every interval until the store closes.
func (s *Store) watch() {
	defer close(s.watchDone)
	t := time.NewTicker(s.opts.WatchInterval)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
			if s.broken() != nil {
				return
			}
			if why := s.verify(); why != "" {
				s.failWith(why)
				return
			}
		}
	}
}

// verifyFile returns why the file at the database's path is not the one
// opened, or "": one stat, cheap enough for every commit and readiness
// check, so a write is not acknowledged into a file that was deleted or
// replaced since the watcher last looked.
func (s *Store) verifyFile() string {
	info, err := os.Stat(s.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "the database file was deleted while the server was running"
	case err != nil:
		return "the database file cannot be examined: " + err.Error()
	case !os.SameFile(info, s.file):
		return "the database file was replaced while the server was running"
	}
	return ""
}

// checkFile fails the store if its file is not the one opened, and
// returns the store's failure (nil if it has none).
func (s *Store) checkFile() error {
	if err := s.broken(); err != nil {
		return err
	}
	if why := s.verifyFile(); why != "" {
		s.failWith(why)
	}
	return s.broken()
}

// verify returns why the database is not the one opened, or "".
func (s *Store) verify() string {
	if why := s.verifyFile(); why != "" {
		return why
	}
	for _, p := range []string{s.path, s.path + "-wal", s.path + "-shm"} {
		if err := writable(p); err != nil {
			return err.Error()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var id string
	err := s.r.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'store_id'`).Scan(&id)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "the database no longer holds the store's identity"
	case err != nil:
		// A busy or slow database is not a replaced one; the next look
		// decides.
		return ""
	case id != s.id:
		return "the database now holds store " + id + ", not the store opened (" + s.id + ")"
	}
	return ""
}

// noteWrite records the outcome of a write for readiness: a write the
// database refused (not a conflict, not the caller going away) makes Ping
// fail until a probe write succeeds.
func (s *Store) noteWrite(ctx context.Context, err error) {
	switch {
	case err == nil:
		s.lastWrite.Store(nil)
	case errors.Is(err, store.ErrUnavailable) && ctx.Err() == nil:
		s.lastWrite.Store(&err)
	}
}

// probe is a write through the writer that inserts an access record and
// rolls it back, and commits a heartbeat: it fails where an audited read
// would (a refused insert, a read-only or full disk, a held lock).
func (s *Store) probe(ctx context.Context) error {
	return s.write(ctx, func(ctx context.Context, tx *writeTx) error {
		for _, q := range []string{`SAVEPOINT probe`,
			`INSERT INTO audit(id, recorded, subject, agent, notify, owners, body) VALUES ('readiness-probe', 0, '', '', 0, '', x'')`,
			`ROLLBACK TO probe`, `RELEASE probe`} {
			if _, err := tx.exec(ctx, q); err != nil {
				if q != `SAVEPOINT probe` {
					_, _ = tx.exec(ctx, `ROLLBACK TO probe`)
					_, _ = tx.exec(ctx, `RELEASE probe`)
				}
				return unavailable(err)
			}
		}
		if _, err := tx.exec(ctx, `INSERT INTO meta(key, value) VALUES ('heartbeat', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`,
			time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
			return unavailable(err)
		}
		return nil
	})
}
