package handlers_test

import (
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTransactionChecksEntriesAsInOrder: entries are checked on every core
// at once, yet a transaction's answer is the one a check of one entry after
// another gives: it stops at the entry that brings the problems to
// fhir.MaxIssues, counts exactly the entries after it as not checked, and
// lists the problems in entry order.
func TestTransactionChecksEntriesAsInOrder(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		la := e.laToken(la1)
		const n = 300
		badEntry := func(i int) string {
			p := planJSON(planSpec{id: fmt.Sprintf("h%d", i), nhs: testNHS(i), la: la1})
			p = strings.Replace(p, `"status"`, `"identifier":[{"value":1,"bad":2},{"value":1,"bad":2},{"value":1,"bad":2}],"status"`, 1)
			return entry{method: "PUT", url: fmt.Sprintf("EpisodeOfCare/h%d", i), resource: p}.json()
		}
		// How many problems one bad entry has, alone.
		one := e.post(la, `{"resourceType":"Bundle","type":"transaction","entry":[`+badEntry(0)+`]}`)
		require.Equal(t, http.StatusBadRequest, one.Code, one.Body.String())
		per := len(decodeOutcome(t, one.Body.Bytes()))
		require.Greater(t, per, 1)
		// Every seventh entry is bad, the others good.
		parts := make([]string, n)
		problems, stop := 0, -1
		for i := range parts {
			if i%7 == 3 {
				parts[i] = badEntry(i)
				if stop < 0 {
					problems += per
					if problems >= 100 {
						stop = i
					}
				}
				continue
			}
			parts[i] = putPlanEntry(planSpec{id: fmt.Sprintf("g%d", i), nhs: testNHS(i), la: la1}).json()
		}
		require.Positive(t, stop)
		r := e.post(la, `{"resourceType":"Bundle","type":"transaction","entry":[`+strings.Join(parts, ",")+`]}`)
		require.Equal(t, http.StatusBadRequest, r.Code, r.Body.String())
		issues := decodeOutcome(t, r.Body.Bytes())
		require.NotEmpty(t, issues)
		assert.Equal(t, fmt.Sprintf("%d further entries were not checked: the entries before them already have 100 problems or more", n-stop-1), issues[0].Diagnostics)
		at := regexp.MustCompile(`^Bundle\.entry\[(\d+)\]`)
		last := -1
		for _, is := range issues[1:] {
			if len(is.Expression) == 0 {
				continue
			}
			m := at.FindStringSubmatch(is.Expression[0])
			require.NotNil(t, m, is.Expression[0])
			i, _ := strconv.Atoi(m[1])
			assert.Equal(t, 3, i%7, "only the bad entries have problems: %s", is.Expression[0])
			assert.LessOrEqual(t, i, stop, "no problem of an entry after the stop")
			assert.GreaterOrEqual(t, i, last, "in entry order")
			last = i
		}
		e.requireEmpty(la1, "g0")
	})
}

// TestTransactionIDsSortInEntryOrder: the plans a transaction creates get
// ids that sort in the order they were made (see registry.NewResourceID),
// so an upload grows the store's id indexes at their end.
func TestTransactionIDsSortInEntryOrder(t *testing.T) {
	e := newEnv(t, backends()[0])
	la := e.laToken(la1)
	var entries []entry
	for i := 0; i < 40; i++ {
		entries = append(entries, condPlanEntry(planSpec{nhs: testNHS(i), la: la1, ident: fmt.Sprintf("S%d", i)}))
	}
	r := e.post(la, bundleJSON("transaction", entries...), "Prefer", "return=minimal")
	require.Equal(t, http.StatusOK, r.Code, r.Body.String())
	var ids []string
	for _, rs := range r.responses() {
		loc, _ := rs["location"].(string)
		_, rest, ok := strings.Cut(loc, "EpisodeOfCare/")
		require.True(t, ok, loc)
		ids = append(ids, strings.Split(rest, "/")[0])
	}
	require.Len(t, ids, 40)
	assert.True(t, sort.StringsAreSorted(ids), "ids in entry order: %v", ids)
}
