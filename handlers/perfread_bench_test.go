package handlers_test

import (
	"fmt"
	"net/http"
	"testing"
)

// accessEnv is benchEnv with children accessed by 30 different nurses, so
// each child's access history shows 25 accesses (repeats of one user
// within 24 hours count once) and LA001's feed is 1,500 accesses long.
func accessEnv(b *testing.B) (*env, []string) {
	e, nhs := benchEnv(b, 50)
	for u := 0; u < 30; u++ {
		tok := e.namedUser(fmt.Sprintf("5550%08d", u), fmt.Sprintf("Nurse %02d", u), "B0107")
		for _, n := range nhs {
			if r := e.do(http.MethodGet, flagSearch(n), tok, ""); r.Code != http.StatusOK {
				b.Fatalf("seeding accesses: %d %s", r.Code, r.Body.String())
			}
		}
	}
	return e, nhs
}

// BenchmarkAccessHistory is a child's access history (25 AuditEvents),
// itself audited.
func BenchmarkAccessHistory(b *testing.B) {
	e, nhs := accessEnv(b)
	drive(b, e, e.nurse(), func(i int) string {
		return "AuditEvent?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|" + nhs[i%len(nhs)]
	})
}

// BenchmarkFeedPage is one page (50) of LA001's notification feed, with
// the feed's total.
func BenchmarkFeedPage(b *testing.B) {
	e, _ := accessEnv(b)
	drive(b, e, e.laToken(la1), func(int) string { return "AuditEvent?date=ge2000-01-01&_count=50" })
}
