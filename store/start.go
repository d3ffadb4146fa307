package store

import (
	"encoding/json"
	"sync"
	"time"
	_ "time/tzdata" // plan dates are read in Europe/London, also in minimal images

	"cpis/fhir"
)

// A record's Start is the sort key of _sort=date: the first instant of its
// period.start, in UTC, to the millisecond. FHIR dates may be partial: 2024
// is 2024-01-01, 2024-03 is 2024-03-01 and 2024-03-05 is that day, each from
// midnight in Europe/London (as plan dates are read everywhere); a dateTime
// is the instant it names, in its own offset. So 2024 sorts before 2024-03,
// and a day before any time on it. Milliseconds keep every FHIR year
// (0001-9999) in range, where nanoseconds would not.

var london = sync.OnceValue(func() *time.Location {
	loc, err := time.LoadLocation("Europe/London")
	if err != nil {
		panic("store: Europe/London: " + err.Error()) // time/tzdata is linked in
	}
	return loc
})

// StartOf normalises a period.start value (a FHIR date or dateTime) to a
// record's Start; zero if it is empty or not a date.
func StartOf(periodStart string) time.Time {
	if periodStart == "" {
		return time.Time{}
	}
	low, _, ok := fhir.ParseDateTime(periodStart, london())
	if !ok {
		return time.Time{}
	}
	return StartAt(low)
}

// StartAt is the Start a time is stored as: UTC, to the millisecond below.
func StartAt(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return time.UnixMilli(t.UnixMilli()).UTC()
}

// PeriodStart is the Start of a resource body: StartOf its period.start
// (zero if it has none). Stores use it where a record's Start must be
// recomputed (a database written before Start was kept; a dump file, which
// does not carry it), so it always agrees with what the server set.
func PeriodStart(body []byte) time.Time {
	if len(body) == 0 || body[0] != '{' {
		return time.Time{}
	}
	var res struct {
		Period struct {
			Start string `json:"start"`
		} `json:"period"`
	}
	if json.Unmarshal(body, &res) != nil {
		return time.Time{}
	}
	return StartOf(res.Period.Start)
}
