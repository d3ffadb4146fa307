package observed

import (
	"context"
	"errors"
	"time"

	"cpis/store"
)

// ScanOwner implements store.OwnerScanner when the wrapped store does; a
// store that does not answers with an error, never an empty scan.
func (o *observed) ScanOwner(ctx context.Context, typ, owner string, since time.Time, fn func(*store.Record) error) (err error) {
	defer func(start time.Time) { o.done("scan_owner", start, err) }(time.Now())
	sc, ok := o.s.(store.OwnerScanner)
	if !ok {
		return errors.New("store/observed: the store cannot scan an owner's records")
	}
	return sc.ScanOwner(ctx, typ, owner, since, fn)
}
