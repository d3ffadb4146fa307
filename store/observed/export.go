package observed

import (
	"context"
	"io"
	"time"

	"cpis/store"
)

var _ store.Exporter = (*full)(nil)

func (o *full) CreateExport(ctx context.Context, job store.ExportJob, staleBefore time.Time) (busy string, err error) {
	defer func(start time.Time) { o.done("export_create", start, err) }(time.Now())
	return o.ex.CreateExport(ctx, job, staleBefore)
}

func (o *full) Export(ctx context.Context, id string) (job store.ExportJob, err error) {
	defer func(start time.Time) { o.done("export_get", start, err) }(time.Now())
	return o.ex.Export(ctx, id)
}

func (o *full) UpdateExport(ctx context.Context, job store.ExportJob) (err error) {
	defer func(start time.Time) { o.done("export_update", start, err) }(time.Now())
	return o.ex.UpdateExport(ctx, job)
}

func (o *full) WriteExportFile(ctx context.Context, id, name string, r io.Reader) (n int64, err error) {
	defer func(start time.Time) { o.done("export_write_file", start, err) }(time.Now())
	return o.ex.WriteExportFile(ctx, id, name, r)
}

func (o *full) OpenExportFile(ctx context.Context, id, name string) (rc io.ReadCloser, err error) {
	defer func(start time.Time) { o.done("export_open_file", start, err) }(time.Now())
	return o.ex.OpenExportFile(ctx, id, name)
}

func (o *full) RemoveExportFiles(ctx context.Context, id string) (err error) {
	defer func(start time.Time) { o.done("export_remove_files", start, err) }(time.Now())
	return o.ex.RemoveExportFiles(ctx, id)
}

func (o *full) DeleteExport(ctx context.Context, id string) (err error) {
	defer func(start time.Time) { o.done("export_delete", start, err) }(time.Now())
	return o.ex.DeleteExport(ctx, id)
}

func (o *full) ExpiredExports(ctx context.Context, t time.Time) (ids []string, err error) {
	defer func(start time.Time) { o.done("export_expired", start, err) }(time.Now())
	return o.ex.ExpiredExports(ctx, t)
}
