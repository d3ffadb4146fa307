package registry

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"cpis/auth"
	"cpis/fhir"
	"cpis/profiles"
	"cpis/store"
)

// Bulk export (FHIR Bulk Data Access, system level $export) for local
// authorities: a job exports the calling authority's own EpisodeOfCare,
// Flag and Organization records and the AuditEvents of its feed (as it is
// shown them) to NDJSON files kept in the store, so any server process can
// answer its polls. The export is one audited disclosure: one AuditEvent
// naming the authority and the counts, written before the manifest is
// first served; if it cannot be written the job fails and its files go.

// exportPage is how many records one store call of an export reads.
const exportPage = 1000

// The states of an export job, for the handlers (which use no value of
// package store).
const (
	ExportRunning = store.ExportRunning
	ExportDone    = store.ExportDone
	ExportFailed  = store.ExportFailed
)

// ExportTypes are the types an export serves, in the order it writes them.
func ExportTypes() []string {
	return []string{"EpisodeOfCare", "Flag", "Organization", "AuditEvent"}
}

// ExportRequest is a kick-off.
type ExportRequest struct {
	Types   []string  // a subset of ExportTypes; all when empty
	Since   time.Time // only resources updated (accesses recorded) after it; zero: all
	Request string    // the kick-off request URL, as the manifest names it
}

// MayExport checks the caller may export: a local authority system with
// system/Export.read (or system/*.read) naming its organisation.
func MayExport(p *auth.Principal) error {
	if !p.IsLA() {
		return fhir.Errorf(fhir.KindForbidden, "Access has been denied to process this request: bulk export is for local authority systems")
	}
	if !p.Allows("Export", auth.Read) {
		return fhir.Errorf(fhir.KindForbidden, "Access has been denied to process this request: the token has no system/Export.read scope")
	}
	if p.OrgCode == "" {
		return fhir.Errorf(fhir.KindForbidden, "Access has been denied to process this request: the token names no organisation")
	}
	return nil
}

func (r *Registry) exporter() (store.Exporter, error) {
	ex, ok := r.st.(store.Exporter)
	if !ok {
		return nil, fhir.Errorf(fhir.KindNotImplemented, "This server's database cannot keep bulk exports")
	}
	return ex, nil
}

// exportRuns are the jobs this process runs, so that a cancel reaching it
// stops its worker at once (a cancel reaching another process stops it at
// its next heartbeat).
type exportRuns struct {
	mu   sync.Mutex
	runs map[string]*exportRun
	wg   sync.WaitGroup
}

type exportRun struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when the worker has finished, its files removed if cancelled
}

func newExportRuns() *exportRuns { return &exportRuns{runs: map[string]*exportRun{}} }

func (e *exportRuns) add(id string, run *exportRun) {
	e.mu.Lock()
	e.runs[id] = run
	e.mu.Unlock()
}

// stop cancels a job's worker in this process, if it runs here, and
// returns a channel closed when it has stopped.
func (e *exportRuns) stop(id string) <-chan struct{} {
	e.mu.Lock()
	run := e.runs[id]
	e.mu.Unlock()
	if run == nil {
		done := make(chan struct{})
		close(done)
		return done
	}
	run.cancel()
	return run.done
}

func (e *exportRuns) remove(id string) {
	e.mu.Lock()
	delete(e.runs, id)
	e.mu.Unlock()
}

// WaitExports waits for this process's export workers to finish (tests,
// shutdown).
func (r *Registry) WaitExports() { r.exports.wg.Wait() }

// StartExport checks the request, stores a running job and starts its
// worker. An authority has one running export at a time: a second
// kick-off while one runs is refused (409).
func (r *Registry) StartExport(ctx context.Context, c Caller, req ExportRequest) (store.ExportJob, error) {
	if err := MayExport(c.P); err != nil {
		return store.ExportJob{}, err
	}
	ex, err := r.exporter()
	if err != nil {
		return store.ExportJob{}, err
	}
	types := req.Types
	if len(types) == 0 {
		types = ExportTypes()
	}
	if _, err := r.SweepExports(ctx); err != nil {
		r.log.Warn("export sweep failed", slog.String("request_id", c.RequestID), slog.String("error", err.Error()))
	}
	now := r.Now()
	job := store.ExportJob{
		ID: r.newID(), Owner: c.P.OrgCode, Client: c.P.Subject, Request: req.Request, Types: types, Since: req.Since,
		Created: now, Expires: now.Add(r.exportExpiry), Beat: now, State: store.ExportRunning, Progress: "starting",
	}
	busy, err := ex.CreateExport(ctx, job, now.Add(-r.exportLease))
	if err != nil {
		return store.ExportJob{}, storeErr(c, err)
	}
	if busy != "" {
		return store.ExportJob{}, fhir.Errorf(fhir.KindConflict, "An export for this local authority is already running; poll it to its end, or cancel it, before starting another")
	}
	wctx, cancel := context.WithCancel(context.Background())
	run := &exportRun{cancel: cancel, done: make(chan struct{})}
	r.exports.add(job.ID, run)
	r.exports.wg.Add(1)
	go func() {
		defer r.exports.wg.Done()
		defer close(run.done)
		defer r.exports.remove(job.ID)
		defer cancel()
		r.runExport(wctx, ex, c, job)
	}()
	return job, nil
}

// ownJob reads a job the caller may see: its own authority's, asked by the
// same client, not expired. Anything else is 404, as for no job at all.
func (r *Registry) ownJob(ctx context.Context, c Caller, ex store.Exporter, id string) (store.ExportJob, error) {
	if err := store.CheckExportName(id); err != nil {
		return store.ExportJob{}, fhir.Errorf(fhir.KindNotFound, "No such export")
	}
	job, err := ex.Export(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.ExportJob{}, fhir.Errorf(fhir.KindNotFound, "No such export")
	}
	if err != nil {
		return store.ExportJob{}, storeErr(c, err)
	}
	if job.Owner != c.P.OrgCode || job.Client != c.P.Subject {
		return store.ExportJob{}, fhir.Errorf(fhir.KindNotFound, "No such export")
	}
	if !r.Now().Before(job.Expires) {
		if err := ex.DeleteExport(ctx, id); err != nil {
			r.log.Warn("removing an expired export failed", slog.String("request_id", c.RequestID), slog.String("error", err.Error()))
		}
		return store.ExportJob{}, fhir.Errorf(fhir.KindNotFound, "No such export (it has expired)")
	}
	return job, nil
}

// ExportStatus answers a poll: the job as it stands. A running job whose
// worker stopped beating (its process died) is failed here, its files
// removed, so a poll never answers "running" forever.
func (r *Registry) ExportStatus(ctx context.Context, c Caller, id string) (store.ExportJob, error) {
	if err := MayExport(c.P); err != nil {
		return store.ExportJob{}, err
	}
	ex, err := r.exporter()
	if err != nil {
		return store.ExportJob{}, err
	}
	job, err := r.ownJob(ctx, c, ex, id)
	if err != nil {
		return store.ExportJob{}, err
	}
	if job.State == store.ExportRunning && job.Beat.Before(r.Now().Add(-r.exportLease)) {
		job.State, job.Error, job.Files = store.ExportFailed, "The export stopped: the server running it went away. Start a new export.", nil
		if err := r.failJob(ctx, ex, job); err != nil {
			return store.ExportJob{}, storeErr(c, err)
		}
	}
	return job, nil
}

// CancelExport removes a job and its files (DELETE on the status URL); a
// running worker stops.
func (r *Registry) CancelExport(ctx context.Context, c Caller, id string) error {
	if err := MayExport(c.P); err != nil {
		return err
	}
	ex, err := r.exporter()
	if err != nil {
		return err
	}
	if _, err := r.ownJob(ctx, c, ex, id); err != nil {
		return err
	}
	select {
	case <-r.exports.stop(id):
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := ex.DeleteExport(ctx, id); err != nil {
		return storeErr(c, err)
	}
	return nil
}

// ExportFile opens one output file of a finished job of the caller's.
func (r *Registry) ExportFile(ctx context.Context, c Caller, id, name string) (io.ReadCloser, store.ExportFile, error) {
	if err := MayExport(c.P); err != nil {
		return nil, store.ExportFile{}, err
	}
	ex, err := r.exporter()
	if err != nil {
		return nil, store.ExportFile{}, err
	}
	job, err := r.ownJob(ctx, c, ex, id)
	if err != nil {
		return nil, store.ExportFile{}, err
	}
	if job.State != store.ExportDone {
		return nil, store.ExportFile{}, fhir.Errorf(fhir.KindNotFound, "No such file: the export has not finished")
	}
	for _, f := range job.Files {
		if f.Name != name {
			continue
		}
		rc, err := ex.OpenExportFile(ctx, id, name)
		if errors.Is(err, store.ErrNotFound) {
			return nil, store.ExportFile{}, fhir.Errorf(fhir.KindNotFound, "No such file")
		}
		if err != nil {
			return nil, store.ExportFile{}, storeErr(c, err)
		}
		return rc, f, nil
	}
	return nil, store.ExportFile{}, fhir.Errorf(fhir.KindNotFound, "No such file")
}

// SweepExports removes expired jobs and their files. It is safe to run from
// several processes at once.
func (r *Registry) SweepExports(ctx context.Context) (int, error) {
	ex, ok := r.st.(store.Exporter)
	if !ok {
		return 0, nil
	}
	return SweepExports(ctx, ex, r.Now())
}

// SweepExports removes the jobs of ex that expired before now, with their
// files.
func SweepExports(ctx context.Context, ex store.Exporter, now time.Time) (int, error) {
	ids, err := ex.ExpiredExports(ctx, now)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		if err := ex.DeleteExport(ctx, id); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// failJob records a job as failed and removes its files, keeping the job
// record (until it expires) so that polls report why.
func (r *Registry) failJob(ctx context.Context, ex store.Exporter, job store.ExportJob) error {
	// The files go first: no file is served before a job is done, so
	// none is served meanwhile, and a poll that reports the failure finds
	// nothing left behind. The failed record lists no file.
	job.Files = nil
	rerr := ex.RemoveExportFiles(ctx, job.ID)
	err := ex.UpdateExport(ctx, job)
	if err == nil {
		err = rerr
	}
	return err
}

// runExport is a job's worker: it writes the files, audits the export and
// marks the job done, beating meanwhile. A job cancelled or expired under
// it (its record gone) stops it, and its files are removed.
func (r *Registry) runExport(ctx context.Context, ex store.Exporter, c Caller, job store.ExportJob) {
	var mu sync.Mutex // guards job.Progress and job.Beat between the worker and the heartbeat
	progress := func(p string) {
		mu.Lock()
		job.Progress = p
		mu.Unlock()
	}
	beatDone := make(chan struct{})
	beatStopped := make(chan struct{})
	go func() {
		defer close(beatStopped)
		t := time.NewTicker(r.exportLease / 4)
		defer t.Stop()
		for {
			select {
			case <-beatDone:
				return
			case <-t.C:
				mu.Lock()
				job.Beat = r.Now()
				j := job
				mu.Unlock()
				err := ex.UpdateExport(ctx, j)
				if errors.Is(err, store.ErrNotFound) {
					r.exports.stop(j.ID) // cancelled from another process, or expired
					return
				}
				if err != nil && ctx.Err() == nil {
					r.log.Warn("export heartbeat failed", slog.String("request_id", c.RequestID), slog.String("error", err.Error()))
				}
			}
		}
	}()
	files, err := r.Export(ctx, c, job, &storeSink{ctx: ctx, ex: ex, id: job.ID}, progress)
	close(beatDone)
	<-beatStopped

	mu.Lock()
	defer mu.Unlock()
	job.Beat = r.Now()
	if err == nil {
		job.State, job.Files, job.Progress = store.ExportDone, files, "done"
		err = ex.UpdateExport(context.WithoutCancel(ctx), job)
		if err == nil {
			return
		}
	}
	// Cancelled, expired, failed by a poll, or failed here: no file stays
	// behind. (A cancel deletes the job once this worker has stopped; a
	// job failed by a poll keeps its record, for the polls.)
	bg := context.WithoutCancel(ctx)
	if ctx.Err() != nil || errors.Is(err, store.ErrNotFound) {
		if derr := ex.RemoveExportFiles(bg, job.ID); derr != nil {
			r.log.Warn("removing a stopped export's files failed", slog.String("request_id", c.RequestID), slog.String("error", derr.Error()))
		}
		return
	}
	r.log.Error("export failed", slog.String("request_id", c.RequestID), slog.String("export", job.ID), slog.String("error", err.Error()))
	job.State, job.Files, job.Progress = store.ExportFailed, nil, "failed"
	job.Error = "The export failed; start a new export (request " + c.RequestID + ")"
	if fe := fhir.As(err); fe != nil && fe.Kind == fhir.KindUnavailable {
		job.Error = "The export failed: the database could not be read or the export could not be recorded; start a new export (request " + c.RequestID + ")"
	}
	if ferr := r.failJob(bg, ex, job); ferr != nil {
		r.log.Error("recording a failed export failed", slog.String("request_id", c.RequestID), slog.String("export", job.ID), slog.String("error", ferr.Error()))
	}
}

// ExportSink receives an export's resources, a type at a time.
type ExportSink interface {
	// Write adds one resource to typ's file.
	Write(typ string, body []byte) error
	// Close finishes the current file and returns the files written.
	Close() ([]store.ExportFile, error)
}

// Export streams the caller's own records of the job's types, updated after
// its Since, into sink, a page at a time: the authority's current, live,
// retained EpisodeOfCare, their Flags as of now, its Organization, and the
// AuditEvents of its feed as it is shown them, recorded up to the job's
// start. Then it records the export (one AuditEvent, notifying nobody) and
// returns the files. A store error or an audit that cannot be written fails
// the export.
func (r *Registry) Export(ctx context.Context, c Caller, job store.ExportJob, sink ExportSink, progress func(string)) ([]store.ExportFile, error) {
	if err := MayExport(c.P); err != nil {
		return nil, err
	}
	ods := c.P.OrgCode
	since := job.Since
	retained := r.RetainedSince()
	var counts []profiles.ExportCount
	for _, typ := range job.Types {
		n := 0
		put := func(body []byte) error {
			n++
			if n%exportPage == 0 {
				progress(fmt.Sprintf("%s: %d resources", typ, n))
			}
			return sink.Write(typ, body)
		}
		progress(typ)
		var err error
		if typ == "AuditEvent" {
			err = r.exportFeed(ctx, c, job, put)
		} else {
			err = r.exportRecords(ctx, c, typ, since, retained, put)
		}
		if err != nil {
			sink.Close()
			return nil, err
		}
		counts = append(counts, profiles.ExportCount{Type: typ, Count: n})
	}
	files, err := sink.Close()
	if err != nil {
		return nil, storeErr(c, err)
	}
	progress("recording the export")
	now := r.Now()
	a := profiles.ExportAccess{ID: r.newID(), Recorded: now, ClientID: c.P.Subject, OrgCode: ods, OrgName: c.P.OrgName,
		Request: job.Request, JobID: job.ID, Counts: counts, TraceID: c.TraceID}
	rec := store.AuditRecord{ID: a.ID, Recorded: now, Owners: []string{ods}, Agent: "system:" + c.P.Subject,
		Notify: false, Body: profiles.ExportAuditEvent(a)}
	if err := r.st.Audit(ctx, []store.AuditRecord{rec}); err != nil {
		return nil, fhir.Wrap(fhir.KindUnavailable, err, "The export could not be recorded, so it is not served")
	}
	return files, nil
}

// exportRecords writes the caller's own live records of typ.
func (r *Registry) exportRecords(ctx context.Context, c Caller, typ string, since, retained time.Time, put func([]byte) error) error {
	ods := c.P.OrgCode
	now := r.Now()
	after := ""
	for {
		q := store.Query{Type: typ, Owner: ods, After: after, Limit: exportPage}
		if typ != "Organization" {
			q.RetainedSince = retained
		}
		recs, _, err := r.st.Search(ctx, q)
		if err != nil {
			return storeErr(c, err)
		}
		for _, rec := range recs {
			if rec.Owner != ods || rec.Deleted || rec.Body == nil {
				continue
			}
			// A Flag that turned inactive by itself since changed then.
			changed := rec.Updated.After(since) || !rec.Ends.IsZero() && rec.Ends.After(since) && !rec.Ends.After(now)
			if !since.IsZero() && !changed {
				continue
			}
			if err := put(r.shown(rec).Body); err != nil {
				return err
			}
		}
		if len(recs) < exportPage {
			return nil
		}
		after = recs[len(recs)-1].ID
	}
}

// exportFeed writes the AuditEvents of the caller's feed recorded after
// since (within retention) and up to the job's start, as it is shown them.
func (r *Registry) exportFeed(ctx context.Context, c Caller, job store.ExportJob, put func([]byte) error) error {
	from := job.Since
	if cutoff := r.RetainedSince(); from.Before(cutoff) {
		from = cutoff
	}
	cursor := ""
	for {
		recs, next, err := r.st.AuditFeed(ctx, c.P.OrgCode, from, cursor, exportPage)
		if err != nil {
			return storeErr(c, err)
		}
		for _, rec := range recs {
			if rec.Recorded.After(job.Created) {
				return nil
			}
			if !job.Since.IsZero() && !rec.Recorded.After(job.Since) {
				continue
			}
			body, err := shownTo(c.P, rec)
			if err != nil {
				return err
			}
			if err := put(body); err != nil {
				return err
			}
		}
		if len(recs) < exportPage || next == "" {
			return nil
		}
		cursor = next
	}
}

// storeSink writes each type's NDJSON file to the store as it is made: a
// pipe feeds the store's writer, so no file is ever held whole in memory.
// A type with no resources gets no file.
type storeSink struct {
	ctx   context.Context
	ex    store.Exporter
	id    string
	cur   *sinkFile
	files []store.ExportFile
	line  bytes.Buffer
}

type sinkFile struct {
	f    store.ExportFile
	pw   *io.PipeWriter
	bw   *bufio.Writer
	done chan error
}

func (s *storeSink) Write(typ string, body []byte) error {
	if s.cur != nil && s.cur.f.Type != typ {
		if err := s.finish(); err != nil {
			return err
		}
	}
	if s.cur == nil {
		pr, pw := io.Pipe()
		f := &sinkFile{f: store.ExportFile{Name: typ + ".ndjson", Type: typ}, pw: pw, bw: bufio.NewWriterSize(pw, 64<<10), done: make(chan error, 1)}
		go func() {
			n, err := s.ex.WriteExportFile(s.ctx, s.id, f.f.Name, pr)
			f.f.Size = n
			pr.CloseWithError(err) // a writer still writing gets the error
			f.done <- err
		}()
		s.cur = f
	}
	// One resource a line: bodies are stored compact, but a line break in
	// one would break the file, so each is compacted.
	s.line.Reset()
	if err := json.Compact(&s.line, body); err != nil {
		return fmt.Errorf("registry: export: a stored %s is not JSON: %w", typ, err)
	}
	s.line.WriteByte('\n')
	if _, err := s.cur.bw.Write(s.line.Bytes()); err != nil {
		return err
	}
	s.cur.f.Count++
	return nil
}

func (s *storeSink) finish() error {
	f := s.cur
	s.cur = nil
	err := f.bw.Flush()
	f.pw.CloseWithError(err)
	if werr := <-f.done; err == nil {
		err = werr
	}
	if err != nil {
		return err
	}
	s.files = append(s.files, f.f)
	return nil
}

func (s *storeSink) Close() ([]store.ExportFile, error) {
	if s.cur != nil {
		if err := s.finish(); err != nil {
			return nil, err
		}
	}
	return s.files, nil
}
