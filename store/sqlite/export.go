package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"cpis/store"
)

var _ store.Exporter = (*Store)(nil)

// Bulk export jobs: a row each in the exports table (the job as JSON, with
// the columns the queries need beside it), their files under
// <data dir>/exports/<id>/. The one writer makes "one running job per
// authority" race-free: the check and the insert are one write.

// exportDir is where a job's files are.
func (s *Store) exportDir(id string) string {
	return filepath.Join(filepath.Dir(s.path), "exports", id)
}

// CreateExport stores a new running job unless the owner has a live one.
func (s *Store) CreateExport(ctx context.Context, job store.ExportJob, staleBefore time.Time) (string, error) {
	if err := store.CheckExportName(job.ID); err != nil {
		return "", err
	}
	body, err := json.Marshal(job)
	if err != nil {
		return "", fmt.Errorf("store/sqlite: export %s: %w", job.ID, err)
	}
	var busy string
	err = s.write(ctx, func(ctx context.Context, tx *writeTx) error {
		busy = ""
		err := tx.queryRow(ctx, `SELECT id FROM exports WHERE owner = ? AND state = ? AND beat >= ? LIMIT 1`,
			job.Owner, store.ExportRunning, staleBefore.UnixNano()).Scan(&busy)
		if err == nil {
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return unavailable(err)
		}
		if _, err := tx.exec(ctx, `INSERT INTO exports(id, owner, state, beat, expires, job) VALUES (?, ?, ?, ?, ?, ?)`,
			job.ID, job.Owner, job.State, job.Beat.UnixNano(), job.Expires.UnixNano(), body); err != nil {
			return unavailable(err)
		}
		return nil
	})
	s.noteWrite(ctx, err)
	if err != nil {
		return "", err
	}
	return busy, nil
}

// Export returns a job.
func (s *Store) Export(ctx context.Context, id string) (store.ExportJob, error) {
	rows, err := s.query(ctx, `SELECT job FROM exports WHERE id = ?`, id)
	if err != nil {
		return store.ExportJob{}, err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return store.ExportJob{}, unavailableCtx(ctx, err)
		}
		return store.ExportJob{}, fmt.Errorf("store/sqlite: export %s: %w", id, store.ErrNotFound)
	}
	var body []byte
	if err := rows.Scan(&body); err != nil {
		return store.ExportJob{}, unavailableCtx(ctx, err)
	}
	var job store.ExportJob
	if err := json.Unmarshal(body, &job); err != nil {
		return store.ExportJob{}, fmt.Errorf("store/sqlite: export %s: %w", id, err)
	}
	return job, nil
}

// UpdateExport replaces a running job's record; ErrNotFound if it is gone
// or over.
func (s *Store) UpdateExport(ctx context.Context, job store.ExportJob) error {
	body, err := json.Marshal(job)
	if err != nil {
		return fmt.Errorf("store/sqlite: export %s: %w", job.ID, err)
	}
	var n int64
	err = s.write(ctx, func(ctx context.Context, tx *writeTx) error {
		res, err := tx.exec(ctx, `UPDATE exports SET state = ?, beat = ?, job = ? WHERE id = ? AND state = ?`,
			job.State, job.Beat.UnixNano(), body, job.ID, store.ExportRunning)
		if err != nil {
			return unavailable(err)
		}
		n, err = res.RowsAffected()
		if err != nil {
			return unavailable(err)
		}
		return nil
	})
	s.noteWrite(ctx, err)
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("store/sqlite: export %s: %w", job.ID, store.ErrNotFound)
	}
	return nil
}

// WriteExportFile copies r into the job's file and syncs it.
func (s *Store) WriteExportFile(ctx context.Context, id, name string, r io.Reader) (int64, error) {
	if err := store.CheckExportName(id); err != nil {
		return 0, err
	}
	if err := store.CheckExportName(name); err != nil {
		return 0, err
	}
	dir := s.exportDir(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, fmt.Errorf("store/sqlite: export %s: %w: %v", id, store.ErrUnavailable, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, fmt.Errorf("store/sqlite: export %s/%s: %w: %v", id, name, store.ErrUnavailable, err)
	}
	n, err := io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("store/sqlite: export %s/%s: %w", id, name, err)
	}
	return n, nil
}

// OpenExportFile opens a job's file.
func (s *Store) OpenExportFile(ctx context.Context, id, name string) (io.ReadCloser, error) {
	if err := store.CheckExportName(id); err != nil {
		return nil, err
	}
	if err := store.CheckExportName(name); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(s.exportDir(id), name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("store/sqlite: export %s/%s: %w", id, name, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store/sqlite: export %s/%s: %w: %v", id, name, store.ErrUnavailable, err)
	}
	return f, nil
}

// DeleteExport removes the job's row, then its files.
func (s *Store) DeleteExport(ctx context.Context, id string) error {
	if err := store.CheckExportName(id); err != nil {
		return nil
	}
	err := s.write(ctx, func(ctx context.Context, tx *writeTx) error {
		if _, err := tx.exec(ctx, `DELETE FROM exports WHERE id = ?`, id); err != nil {
			return unavailable(err)
		}
		return nil
	})
	s.noteWrite(ctx, err)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(s.exportDir(id)); err != nil {
		return fmt.Errorf("store/sqlite: export %s: removing files: %w: %v", id, store.ErrUnavailable, err)
	}
	return nil
}

// RemoveExportFiles removes the job's files.
func (s *Store) RemoveExportFiles(ctx context.Context, id string) error {
	if err := store.CheckExportName(id); err != nil {
		return nil
	}
	if err := os.RemoveAll(s.exportDir(id)); err != nil {
		return fmt.Errorf("store/sqlite: export %s: removing files: %w: %v", id, store.ErrUnavailable, err)
	}
	return nil
}

// ExpiredExports lists the jobs that expired before t.
func (s *Store) ExpiredExports(ctx context.Context, t time.Time) ([]string, error) {
	rows, err := s.query(ctx, `SELECT id FROM exports WHERE expires < ? ORDER BY expires`, t.UnixNano())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, unavailableCtx(ctx, err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailableCtx(ctx, err)
	}
	return ids, nil
}
