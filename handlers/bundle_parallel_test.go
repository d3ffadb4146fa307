package handlers_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTransactionOfManyEntriesKeepsEntryOrder: a large transaction's
// entries are resolved against the store, built into records and checked
// for data-quality warnings on every core; the answer is still the one an
// entry-by-entry reading gives: the problems in entry order and nothing
// written, or the new ids in entry order (they sort in creation order) and
// each warning on its own entry.
func TestTransactionOfManyEntriesKeepsEntryOrder(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.requireTransactions(t)
		e.clock.t = time.Date(2026, 6, 15, 10, 0, 0, 0, time.UTC)
		la := e.laToken(la1)
		e.putPlan(planSpec{id: "held", nhs: nhsA, la: la1, ident: "HELD", start: "2026-01-01"})
		const n = 200
		entries := make([]entry, n)
		for i := range entries {
			entries[i] = entry{method: "POST", url: "EpisodeOfCare",
				resource: planJSON(planSpec{nhs: testNHS(i), la: la1, ident: fmt.Sprintf("M%d", i), planType: "LAC", start: "2026-01-01"})}
		}

		t.Run("problems-in-entry-order", func(t *testing.T) {
			bad := slices.Clone(entries)
			bad[17] = entry{method: "PUT", url: "EpisodeOfCare/held", ifMatch: `W/"7"`,
				resource: planJSON(planSpec{id: "held", nhs: nhsA, la: la1, ident: "HELD", start: "2026-01-01"})}
			bad[90] = entry{method: "DELETE", url: "EpisodeOfCare/missing"}
			bad[163] = entry{method: "PUT", url: "EpisodeOfCare/nope", ifMatch: `W/"1"`, resource: planJSON(planSpec{id: "nope", nhs: nhsB, la: la1})}
			r := e.post(la, bundleJSON("transaction", bad...))
			require.NotEqual(t, http.StatusOK, r.Code, r.Body.String())
			assert.Equal(t, []string{
				"PRECONDITION_FAILED@Bundle.entry[17]",
				"RESOURCE_NOT_FOUND@Bundle.entry[90]",
				"PRECONDITION_FAILED@Bundle.entry[163]",
			}, r.issues())
			assert.Equal(t, 1, e.count("EpisodeOfCare", la1), "nothing written")
			assert.Equal(t, 1, e.count("Flag", la1))
		})

		t.Run("ids-and-warnings-in-entry-order", func(t *testing.T) {
			good := slices.Clone(entries)
			good[150] = entry{method: "POST", url: "EpisodeOfCare",
				resource: planJSON(planSpec{nhs: nhsA, la: la1, ident: "DUP", start: "2026-02-01"})} // a second live CPP for nhsA
			r := e.post(la, bundleJSON("transaction", good...), "Prefer", "return=minimal")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			rs := r.responses()
			require.Len(t, rs, n)
			var ids []string
			for i, x := range rs {
				loc, _ := x["location"].(string)
				id, ok := strings.CutPrefix(loc, base+"/EpisodeOfCare/")
				require.True(t, ok, "entry %d: %v", i, x)
				ids = append(ids, strings.TrimSuffix(id, "/_history/1"))
				want := []string{}
				if i == 150 {
					want = []string{"warning duplicate-plan"}
				}
				if oo, ok := x["outcome"]; ok || i == 150 {
					assert.Equal(t, want, uploadWarnings(t, oo), "entry %d", i)
				}
			}
			assert.True(t, slices.IsSorted(ids), "the new ids follow the entries' order: %v", ids)
			assert.Equal(t, n+1, e.count("EpisodeOfCare", la1))
			assert.Equal(t, n+1, e.count("Flag", la1))
		})
	})
}
