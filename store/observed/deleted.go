package observed

import (
	"context"
	"errors"
	"time"

	"cpis/store"
)

// Deleted implements store.DeletedLister when the wrapped store does; a
// store that does not answers with an error, never an empty list.
func (o *observed) Deleted(ctx context.Context, typ, owner string, since time.Time, after string, limit int) (r []store.Record, err error) {
	defer func(start time.Time) { o.done("deleted", start, err) }(time.Now())
	dl, ok := o.s.(store.DeletedLister)
	if !ok {
		return nil, errors.New("store/observed: the store cannot list deleted records")
	}
	return dl.Deleted(ctx, typ, owner, since, after, limit)
}
