package observed

import (
	"context"
	"time"

	"cpis/store"
)

// historian is an observed store whose backend reads type-level histories.
type historian struct {
	*observed
	th store.TypeHistorian
}

func (o *historian) TypeHistory(ctx context.Context, q store.HistoryQuery) (r []store.Record, err error) {
	defer func(start time.Time) { o.done("type_history", start, err) }(time.Now())
	return o.th.TypeHistory(ctx, q)
}
