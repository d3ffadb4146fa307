package store

import (
	"context"
	"fmt"
	"io"
	"time"
)

// The states of a bulk export job.
const (
	ExportRunning = "running"
	ExportDone    = "done"
	ExportFailed  = "failed"
)

// ExportJob is one bulk export (FHIR Bulk Data $export) of a local
// authority's records. The job record and its files live in the store, so
// any server process can answer a poll, a download or a cancel.
type ExportJob struct {
	ID      string
	Owner   string // the ODS code of the local authority that asked
	Client  string // the client id (token sub) that asked: only it may poll and download
	Request string // the kick-off request, as the manifest names it
	Types   []string
	Since   time.Time // zero: everything
	Created time.Time // the manifest's transactionTime
	Expires time.Time // after it the job and its files are gone
	// Beat is the worker's last heartbeat while the job runs: a running job
	// whose beat is older than the lease lost its process.
	Beat     time.Time
	State    string
	Progress string // what the worker is doing, for X-Progress
	Error    string // why the job failed, for the client (never patient data)
	Files    []ExportFile
}

// ExportFile is one NDJSON file of a job.
type ExportFile struct {
	Name  string // the file's name within the job, e.g. EpisodeOfCare-1.ndjson
	Type  string
	Count int
	Size  int64
}

// Exporter is a store that keeps bulk export jobs and their files.
type Exporter interface {
	// CreateExport stores a new running job, unless job.Owner already has
	// a running job with a heartbeat at or after staleBefore: then nothing
	// is stored and busy is that job's id. Race-free across processes.
	CreateExport(ctx context.Context, job ExportJob, staleBefore time.Time) (busy string, err error)
	// Export returns a job, or ErrNotFound.
	Export(ctx context.Context, id string) (ExportJob, error)
	// UpdateExport replaces a running job's state, progress, error,
	// heartbeat and files. It returns ErrNotFound if the job is gone
	// (cancelled or expired) or no longer running (a poll found its worker
	// silent and failed it): its worker then stops, and a late heartbeat
	// never brings a failed job back to running.
	UpdateExport(ctx context.Context, job ExportJob) error
	// WriteExportFile stores a file of a job from r as it reads it (never
	// the whole file in memory) and returns its size.
	WriteExportFile(ctx context.Context, id, name string, r io.Reader) (int64, error)
	// OpenExportFile opens a stored file, or returns ErrNotFound.
	OpenExportFile(ctx context.Context, id, name string) (io.ReadCloser, error)
	// RemoveExportFiles removes a job's files and keeps its record (a
	// failed job still answers its polls).
	RemoveExportFiles(ctx context.Context, id string) error
	// DeleteExport removes a job and its files; a job already gone is not
	// an error.
	DeleteExport(ctx context.Context, id string) error
	// ExpiredExports lists the jobs whose Expires is before t.
	ExpiredExports(ctx context.Context, t time.Time) ([]string, error)
}

// CheckExportName refuses a job id or file name that is not a plain name
// (letters, digits, '-', '_', '.', not starting with '.'): names become
// paths on disk and keys in the database.
func CheckExportName(s string) error {
	if s == "" || len(s) > 128 || s[0] == '.' {
		return fmt.Errorf("store: export name %q: %w", s, ErrNotFound)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("store: export name %q: %w", s, ErrNotFound)
		}
	}
	return nil
}
