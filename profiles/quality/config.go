package quality

import (
	"fmt"
	"strconv"
)

// Variables are the environment variables that set the thresholds, each
// with the field it sets. Unset variables keep the default.
var Variables = []struct {
	Name  string
	Field func(*Thresholds) *int
	Help  string
}{
	{"CPIS_DQ_UCPP_MONTHS", func(t *Thresholds) *int { return &t.UCPPMonths }, "ucpp-overdue: months a live UCPP may run"},
	{"CPIS_DQ_CPP_REVIEW_MONTHS", func(t *Thresholds) *int { return &t.CPPReviewMonths }, "cpp-review-overdue: months a live CPP may go without an update"},
	{"CPIS_DQ_LAC_REVIEW_MONTHS", func(t *Thresholds) *int { return &t.LACReviewMonths }, "lac-review-overdue: months a live LAC may go without an update"},
	{"CPIS_DQ_END_FUTURE_MONTHS", func(t *Thresholds) *int { return &t.EndFutureMonths }, "end-far-future: months ahead a period.end may be"},
	{"CPIS_DQ_START_FUTURE_DAYS", func(t *Thresholds) *int { return &t.StartFutureDays }, "start-in-future: days ahead a period.start may be"},
	{"CPIS_DQ_ORGANIZATION_MONTHS", func(t *Thresholds) *int { return &t.OrganizationMonths }, "organization-stale: months the Organization may go without an update"},
	{"CPIS_DQ_CORRECTION_DAYS", func(t *Thresholds) *int { return &t.CorrectionDays }, "nhs-number-corrected: days a correction is listed"},
}

// ThresholdsFromEnv is DefaultThresholds with any variable in Variables
// that is set: a whole number, 0 or more (0 for StartFutureDays only; the
// others must be at least 1). An error names the variable.
func ThresholdsFromEnv(getenv func(string) string) (Thresholds, error) {
	t := DefaultThresholds()
	for _, v := range Variables {
		s := getenv(v.Name)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		min := 1
		if v.Name == "CPIS_DQ_START_FUTURE_DAYS" {
			min = 0
		}
		if err != nil || n < min || n > 1200 {
			return Thresholds{}, fmt.Errorf("%s: want a whole number from %d to 1200, got %q", v.Name, min, s)
		}
		*v.Field(&t) = n
	}
	return t, nil
}
