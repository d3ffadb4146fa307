package observed

import (
	"context"
	"time"

	"cpis/store"
)

func (o *full) TypeHistory(ctx context.Context, q store.HistoryQuery) (r []store.Record, err error) {
	defer func(start time.Time) { o.done("type_history", start, err) }(time.Now())
	return o.th.TypeHistory(ctx, q)
}
