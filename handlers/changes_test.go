package handlers_test

// What changed since (issue 15 part A): _lastUpdated, _sort with stable
// pages, _since/_at on histories and the type-level history, on both stores.

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
)

// ids lists the ids of a bundle's entries of one mode ("" for all).
func entryIDs(r resp, mode string) []string {
	out := []string{}
	for _, res := range r.entries(mode) {
		out = append(out, jpath[string](r.t, res, "id"))
	}
	return out
}

// linkPath turns an absolute link into the path e.do takes.
func linkPath(t *testing.T, link string) string {
	t.Helper()
	rest, ok := strings.CutPrefix(link, base+"/")
	require.True(t, ok, "link %s is under the base", link)
	return rest
}

// followPages reads every page of a search from its first request, calling
// between after each page, and returns the ids served, in order.
func followPages(t *testing.T, e *env, first, token string, between func()) []string {
	t.Helper()
	var out []string
	next := first
	for n := 0; next != ""; n++ {
		require.Less(t, n, 100, "paging ends")
		r := e.do(http.MethodGet, next, token, "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		out = append(out, entryIDs(r, "match")...)
		next = ""
		if l := r.link("next"); l != "" {
			next = linkPath(t, l)
		}
		if between != nil {
			between()
		}
	}
	return out
}

// changedPlans writes LA001's plans p1..p4 an hour apart from the test
// clock's start (2026-06-15 10:00 UTC, 11:00 in London), then updates p1 a
// day later, and LA002's plan q1 in between.
func changedPlans(e *env) time.Time {
	start := e.clock.Now()
	for i, id := range []string{"p1", "p2", "p3", "p4"} {
		e.putPlan(planSpec{id: id, nhs: nhsA, la: la1, ident: fmt.Sprint("I", i)})
		e.clock.Add(time.Hour)
	}
	e.putPlan(planSpec{id: "q1", nhs: nhsA, la: la2})
	e.clock.Add(24 * time.Hour)
	e.putPlan(planSpec{id: "p1", nhs: nhsA, la: la1, ident: "I0", status: "finished", end: "2026-06-16"})
	return start
}

func TestLastUpdatedSearch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		start := changedPlans(e) // p1 v2 at +28h; p2 +1h, p3 +2h, p4 +3h; q1 (LA002) +4h
		la := e.laToken(la1)
		inst := func(d time.Duration) string { return url.QueryEscape(start.Add(d).Format(time.RFC3339)) }
		for _, tc := range []struct {
			name, query string
			want        []string
		}{
			{"ge-instant", "_lastUpdated=ge" + inst(time.Hour), []string{"p1", "p2", "p3", "p4"}},
			{"gt-instant", "_lastUpdated=gt" + inst(time.Hour), []string{"p1", "p3", "p4"}},
			{"lt-instant", "_lastUpdated=lt" + inst(2*time.Hour), []string{"p2"}},
			{"le-instant", "_lastUpdated=le" + inst(2*time.Hour), []string{"p2", "p3"}},
			{"eb-instant", "_lastUpdated=eb" + inst(2*time.Hour), []string{"p2"}},
			{"sa-instant", "_lastUpdated=sa" + inst(2*time.Hour), []string{"p1", "p4"}},
			{"eq-instant", "_lastUpdated=" + inst(3*time.Hour), []string{"p4"}},
			{"range", "_lastUpdated=ge" + inst(time.Hour) + "&_lastUpdated=lt" + inst(3*time.Hour), []string{"p2", "p3"}},
			// 2026-06-15 is the whole day in London: p1's update is on the 16th.
			{"eq-day", "_lastUpdated=2026-06-15", []string{"p2", "p3", "p4"}},
			{"gt-day", "_lastUpdated=gt2026-06-15", []string{"p1"}},
			{"le-day", "_lastUpdated=le2026-06-15", []string{"p2", "p3", "p4"}},
			{"eq-month", "_lastUpdated=2026-06", []string{"p1", "p2", "p3", "p4"}},
			{"lt-year", "_lastUpdated=lt2026", []string{}},
			// ap: the day widened by 10% of its distance from now (about 3h).
			{"ap-day", "_lastUpdated=ap2026-06-16", []string{"p1"}},
			// 13:30:00 widened by 10% of 24.5 hours: 11:03 to 15:57.
			{"ap-instant", "_lastUpdated=ap" + inst(3*time.Hour+30*time.Minute), []string{"p3", "p4"}},
			{"with-identifier", "identifier=https://la001.example/plan-id|I2&_lastUpdated=ge" + inst(0), []string{"p3"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := e.do(http.MethodGet, "EpisodeOfCare?"+tc.query, la, "")
				require.Equal(t, http.StatusOK, r.Code, r.Body.String())
				assert.Equal(t, tc.want, entryIDs(r, "match"))
				assert.Equal(t, len(tc.want), r.total(), "the total applies the bound")
				assert.Empty(t, r.entries("outcome"), "nothing ignored")
				assert.Contains(t, r.link("self"), "_lastUpdated=", "the self link says what was applied")
			})
		}
		t.Run("flag-by-nhs-number", func(t *testing.T) {
			r := e.do(http.MethodGet, flagSearch(nhsA)+"&_lastUpdated=gt2026-06-15", e.nurse(), "")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Equal(t, []string{"p1"}, entryIDs(r, "match"), "across authorities, only what changed")
			r = e.do(http.MethodGet, flagSearch(nhsA)+"&_lastUpdated=2026-06-15", e.nurse(), "")
			assert.Equal(t, []string{"p2", "p3", "p4", "q1"}, entryIDs(r, "match"))
		})
		t.Run("organization", func(t *testing.T) {
			e.putOrg("org-la001", la1, "Local Authority One")
			r := e.do(http.MethodGet, "Organization?_lastUpdated=ge2026-06-16", la, "")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Equal(t, []string{"org-la001"}, entryIDs(r, "match"))
			r = e.do(http.MethodGet, "Organization?_lastUpdated=lt2026-06-16", la, "")
			assert.Empty(t, entryIDs(r, "match"))
		})
		for _, tc := range []struct{ name, query string }{
			{"ne-400", "_lastUpdated=ne2026-06-15"},
			{"garbage-400", "_lastUpdated=ge15-06-2026"},
			{"two-values-400", "_lastUpdated=ge2026-06-15,lt2026-06-16"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := e.do(http.MethodGet, "EpisodeOfCare?"+tc.query, la, "")
				require.Equal(t, http.StatusBadRequest, r.Code, r.Body.String())
				assert.Equal(t, []string{"INVALID_SEARCH_DATA@_lastUpdated"}, r.issues())
			})
		}
	})
}

func TestSortAndPaging(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		changedPlans(e)
		la := e.laToken(la1)
		for _, tc := range []struct {
			name, query string
			want        []string
		}{
			{"default-by-id", "", []string{"p1", "p2", "p3", "p4"}},
			{"by-id", "_sort=_id", []string{"p1", "p2", "p3", "p4"}},
			{"oldest-first", "_sort=_lastUpdated", []string{"p2", "p3", "p4", "p1"}},
			{"newest-first", "_sort=-_lastUpdated", []string{"p1", "p4", "p3", "p2"}},
			{"newest-first-since", "_sort=-_lastUpdated&_lastUpdated=ge2026-06-15T12:00:00Z", []string{"p1", "p4", "p3"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				q := "EpisodeOfCare?_count=1"
				if tc.query != "" {
					q += "&" + tc.query
				}
				assert.Equal(t, tc.want, followPages(t, e, q, la, nil), "pages of one")
				r := e.do(http.MethodGet, "EpisodeOfCare?"+tc.query, la, "")
				require.Equal(t, http.StatusOK, r.Code, r.Body.String())
				assert.Equal(t, tc.want, entryIDs(r, "match"))
				assert.Empty(t, r.entries("outcome"))
			})
		}
		t.Run("flags-newest-first", func(t *testing.T) {
			got := followPages(t, e, flagSearch(nhsA)+"&_sort=-_lastUpdated&_count=2", e.nurse(), nil)
			assert.Equal(t, []string{"p1", "q1", "p4", "p3", "p2"}, got)
		})
		for _, tc := range []struct{ name, sort string }{
			{"date-then-id-descending-ignored", "date,-_id"}, {"descending-id-ignored", "-_id"}, {"two-keys-ignored", "_lastUpdated,_id"}, {"unknown-ignored", "status"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := e.do(http.MethodGet, "EpisodeOfCare?_sort="+tc.sort, la, "")
				require.Equal(t, http.StatusOK, r.Code, r.Body.String())
				assert.Equal(t, []string{"p1", "p2", "p3", "p4"}, entryIDs(r, "match"), "by id, as without _sort")
				oo := r.entries("outcome")
				require.Len(t, oo, 1, "the ignored sort is reported")
				assert.Contains(t, jpath[string](t, oo[0], "issue", 0, "diagnostics"), "_sort="+tc.sort)
				assert.NotContains(t, r.link("self"), "_sort", "the self link holds only what was applied")
				r = e.do(http.MethodGet, "EpisodeOfCare?_sort="+tc.sort, la, "", "Prefer", "handling=strict")
				require.Equal(t, http.StatusBadRequest, r.Code, r.Body.String())
				assert.Equal(t, "INVALID_SEARCH_DATA", r.code())
			})
		}
		t.Run("sort-of-unsorted-type-ignored", func(t *testing.T) {
			e.putOrg("org1", la1, "Local Authority One")
			e.putOrg("org2", la2, "Local Authority Two")
			r := e.do(http.MethodGet, "CareTeam?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|"+nhsA+"&_sort=-_lastUpdated", e.nurse(), "")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			require.Len(t, r.entries("outcome"), 1)
		})
		t.Run("link-keeps-the-sort", func(t *testing.T) {
			r := e.do(http.MethodGet, "EpisodeOfCare?_sort=-_lastUpdated&_count=2", la, "")
			next := r.link("next")
			require.NotEmpty(t, next)
			// A link is followed as given: a different sort cannot be
			// replayed onto its position.
			r = e.do(http.MethodGet, linkPath(t, next)+"&_sort=_id", la, "")
			require.Equal(t, http.StatusBadRequest, r.Code, r.Body.String())
			r = e.do(http.MethodGet, linkPath(t, next), e.laToken(la2), "")
			require.Equal(t, http.StatusBadRequest, r.Code, "another caller's link: %s", r.Body.String())
			r = e.do(http.MethodGet, linkPath(t, next), la, "")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Equal(t, []string{"p3", "p2"}, entryIDs(r, "match"))
		})
	})
}

// TestHazard_SortedPagesSkipOrRepeatUnderConcurrentWrites follows every
// order in pages of three while other requests create and update plans
// between (and during) the pages: every plan not changed during the paging
// is served exactly once; a plan changed during it is served at most once
// except in the order oldest-first, where it moves to the end (README).
// Plans start on a few dates (ties broken by id) and new ones land before,
// among and after them; the updates keep their plan's start.
func TestHazard_SortedPagesSkipOrRepeatUnderConcurrentWrites(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		la := e.laToken(la1)
		stable := map[string]bool{}
		starts := map[string]string{}
		for i := 0; i < 12; i++ {
			id := fmt.Sprintf("s%02d", i)
			starts[id] = fmt.Sprintf("2025-%02d-01", 2*(i%4)+2)
			e.putPlan(planSpec{id: id, nhs: nhsA, la: la1, start: starts[id]})
			stable[id] = true
			if i%3 == 0 {
				e.clock.Add(time.Second) // ties in time, broken by id
			}
		}
		for i := 0; i < 3; i++ {
			e.putPlan(planSpec{id: fmt.Sprintf("m%d", i), nhs: nhsB, la: la1})
		}
		tokens := map[string]string{la1: la, la2: e.laToken(la2)}
		for _, sort := range []string{"_id", "_lastUpdated", "-_lastUpdated", "date", "-date"} {
			t.Run(sort, func(t *testing.T) {
				tag := strings.NewReplacer("_", "", "-", "x").Replace(sort)
				n := 0
				between := func() {
					n++
					e.clock.Add(time.Second)
					var wg sync.WaitGroup
					for _, p := range []planSpec{
						{id: fmt.Sprintf("n%s%03d", tag, n), nhs: nhsB, la: la1, start: fmt.Sprintf("2025-%02d-01", n%10+1)}, // a new plan
						{id: fmt.Sprintf("m%d", n%3), nhs: nhsB, la: la1, end: []string{"", "2027-01-01"}[n%2]},              // an update
						{id: fmt.Sprintf("o%s%03d", tag, n), nhs: nhsB, la: la2},                                             // another authority's
					} {
						wg.Add(1)
						go func(p planSpec) {
							defer wg.Done()
							r := e.do(http.MethodPut, "EpisodeOfCare/"+p.id, tokens[p.la], planJSON(p))
							assert.Contains(t, []int{200, 201}, r.Code, r.Body.String())
						}(p)
					}
					wg.Wait()
				}
				got := followPages(t, e, "EpisodeOfCare?_count=3&_sort="+sort, la, between)
				seen := map[string]int{}
				for _, id := range got {
					seen[id]++
					assert.NotEqual(t, byte('o'), id[0], "another authority's plan")
				}
				for id := range stable {
					assert.Equal(t, 1, seen[id], "%s: a plan not changed during the paging is served exactly once (%s)", id, sort)
				}
				if sort != "_lastUpdated" {
					for id, k := range seen {
						assert.LessOrEqual(t, k, 1, "%s served more than once (%s)", id, sort)
					}
				}
				if strings.HasSuffix(sort, "date") {
					// And in their order: by start, then id.
					var served []string
					for _, id := range got {
						if stable[id] {
							served = append(served, id)
						}
					}
					want := slices.SortedFunc(maps.Keys(stable), func(a, b string) int {
						c := strings.Compare(starts[a]+a, starts[b]+b)
						if sort == "-date" {
							c = -c
						}
						return c
					})
					assert.Equal(t, want, served, "the unchanged plans in the order of their start (%s)", sort)
				}
			})
		}
	})
}

// allAuditOf counts every access record about a patient, notifying or not
// (a local authority's reads of its own plans are recorded, not notified).
func (e *env) allAuditOf(nhs string) int {
	e.t.Helper()
	d, ok := e.store.(store.Dumper)
	require.True(e.t, ok)
	n := 0
	require.NoError(e.t, d.Dump(context.Background(), func(it store.Item) error {
		if it.Audit != nil && it.Audit.Subject == nhs {
			n++
		}
		return nil
	}))
	return n
}

// lastAuditOf is the latest access record about a patient.
func (e *env) lastAuditOf(nhs string) store.AuditRecord {
	e.t.Helper()
	d, ok := e.store.(store.Dumper)
	require.True(e.t, ok)
	var last store.AuditRecord
	require.NoError(e.t, d.Dump(context.Background(), func(it store.Item) error {
		if it.Audit != nil && it.Audit.Subject == nhs {
			last = *it.Audit
		}
		return nil
	}))
	require.NotEmpty(e.t, last.ID, "an access record about the patient")
	return last
}

func TestTypeHistory(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		la := e.laToken(la1)
		e.putPlan(planSpec{id: "h1", nhs: nhsA, la: la1})
		e.clock.Add(time.Hour)
		e.putPlan(planSpec{id: "h2", nhs: nhsB, la: la1})
		e.clock.Add(time.Hour)
		e.putPlan(planSpec{id: "x1", nhs: nhsC, la: la2}) // another authority's
		e.clock.Add(time.Hour)
		since := e.clock.Now()
		e.putPlan(planSpec{id: "h1", nhs: nhsA, la: la1, status: "finished", end: "2026-06-15"})
		e.clock.Add(time.Hour)
		require.Equal(t, http.StatusOK, e.do(http.MethodDelete, "EpisodeOfCare/h2", la, "").Code)

		type ver struct{ ID, Method, Status, Etag string }
		versions := func(r resp) []ver {
			out := []ver{}
			for _, en := range jpath[[]any](t, r.json(), "entry") {
				out = append(out, ver{
					ID: strings.TrimPrefix(jpath[string](t, en, "fullUrl"), base+"/EpisodeOfCare/"), Method: jpath[string](t, en, "request", "method"),
					Status: jpath[string](t, en, "response", "status"), Etag: jpath[string](t, en, "response", "etag"),
				})
			}
			return out
		}
		all := []ver{{"h2", "DELETE", "204 No Content", `W/"2"`}, {"h1", "PUT", "200 OK", `W/"2"`}, {"h2", "PUT", "201 Created", `W/"1"`}, {"h1", "PUT", "201 Created", `W/"1"`}}

		t.Run("la-own-newest-first", func(t *testing.T) {
			a, b := e.allAuditOf(nhsA), e.allAuditOf(nhsB)
			r := e.do(http.MethodGet, "EpisodeOfCare/_history", la, "")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Equal(t, "history", r.json()["type"])
			assert.Equal(t, all, versions(r))
			assert.NotContains(t, r.Body.String(), "x1", "another authority's plan")
			assert.NotContains(t, r.Body.String(), nhsC)
			assert.Equal(t, a+1, e.allAuditOf(nhsA), "each child shown is audited once")
			assert.Equal(t, b+1, e.allAuditOf(nhsB))
			assert.Equal(t, 0, e.allAuditOf(nhsC), "a child not shown is not")
			ev := e.lastAuditOf(nhsA)
			assert.False(t, ev.Notify, "an LA reading its own plans is recorded, not notified")
			assert.Contains(t, string(ev.Body), `"code":"history-type"`)
			v := e.do(http.MethodPost, "AuditEvent/$validate", la, string(ev.Body))
			assert.Equal(t, []string{"information"}, v.severities(), "the AuditEvent is a valid CP-IS AuditEvent: %s", v.Body.String())
		})
		t.Run("since", func(t *testing.T) {
			r := e.do(http.MethodGet, "EpisodeOfCare/_history?_since="+url.QueryEscape(since.Format(time.RFC3339)), la, "")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Equal(t, all[:2], versions(r), "only what changed since")
			assert.Contains(t, r.link("self"), "_since=")
		})
		t.Run("paged", func(t *testing.T) {
			var got []ver
			next := "EpisodeOfCare/_history?_count=1"
			for n := 0; next != ""; n++ {
				require.Less(t, n, 10)
				r := e.do(http.MethodGet, next, la, "")
				require.Equal(t, http.StatusOK, r.Code, r.Body.String())
				got = append(got, versions(r)...)
				next = ""
				if l := r.link("next"); l != "" {
					next = linkPath(t, l)
					assert.NotContains(t, l, "_count", "the link is sealed")
					if n == 0 {
						// A link is for its caller and its own route only.
						assert.Equal(t, http.StatusBadRequest, e.do(http.MethodGet, next, e.laToken(la2), "").Code)
						assert.Equal(t, http.StatusBadRequest, e.do(http.MethodGet, strings.Replace(next, "EpisodeOfCare/_history", "EpisodeOfCare", 1), la, "").Code)
						assert.Equal(t, http.StatusBadRequest, e.do(http.MethodGet, next+"&_since=2020-01-01", la, "").Code)
						// A version written between pages is newer than every
						// version read: it is not on a later page.
						e.clock.Add(time.Minute)
						e.putPlan(planSpec{id: "h3", nhs: nhsA, la: la1})
					}
				}
			}
			assert.Equal(t, all, got)
		})
		t.Run("flags", func(t *testing.T) {
			r := e.do(http.MethodGet, "Flag/_history?_since="+url.QueryEscape(since.Format(time.RFC3339)), la, "")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			res := r.entries("")
			require.Len(t, res, 2, "h3 and h1's second version as Flags; h2's delete is not a Flag version")
			for _, f := range res {
				assert.Equal(t, "Flag", f["resourceType"])
			}
		})
		t.Run("organization", func(t *testing.T) {
			e.putOrg("org1", la1, "Local Authority One")
			e.putOrg("org2", la2, "Local Authority Two")
			r := e.do(http.MethodGet, "Organization/_history", la, "")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			require.Len(t, r.entries(""), 1)
			assert.Equal(t, "org1", r.entries("")[0]["id"])
		})
		for _, tc := range []struct {
			name, path, token string
			status            int
			code              string
		}{
			{"nurse-403", "EpisodeOfCare/_history", e.nurse(), 403, "ACCESS_DENIED"},
			{"nurse-flags-403", "Flag/_history", e.nurse(), 403, "ACCESS_DENIED"},
			{"gp-silent-403", "Flag/_history?silent=true", e.gp(), 403, "ACCESS_DENIED"},
			{"nurse-organizations-403", "Organization/_history", e.nurse(), 403, "ACCESS_DENIED"},
			{"at-on-type-400", "EpisodeOfCare/_history?_at=2026-06-15", la, 400, "INVALID_SEARCH_DATA"},
			{"bad-since-400", "EpisodeOfCare/_history?_since=yesterday", la, 400, "INVALID_SEARCH_DATA"},
			{"strict-unknown-400", "EpisodeOfCare/_history?patient=x", la, 400, "INVALID_SEARCH_DATA"},
			{"careteam-no-history-404", "CareTeam/_history", la, 404, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var h []string
				if strings.HasPrefix(tc.name, "strict") {
					h = []string{"Prefer", "handling=strict"}
				}
				before := e.allAuditOf(nhsA)
				r := e.do(http.MethodGet, tc.path, tc.token, "", h...)
				require.Equal(t, tc.status, r.Code, r.Body.String())
				if tc.code != "" {
					assert.Equal(t, tc.code, r.code())
				}
				assert.NotContains(t, r.Body.String(), nhsA)
				assert.Equal(t, before, e.allAuditOf(nhsA), "a refusal shows nothing and audits nothing")
			})
		}
	})
}

func TestInstanceHistorySinceAndAt(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		la := e.laToken(la1)
		e.putPlan(planSpec{id: "i1", nhs: nhsA, la: la1}) // v1 2026-06-15 10:00Z
		e.clock.Add(24 * time.Hour)
		e.putPlan(planSpec{id: "i1", nhs: nhsA, la: la1, status: "finished", end: "2026-06-16"}) // v2 06-16 10:00Z
		e.clock.Add(48 * time.Hour)
		e.putPlan(planSpec{id: "i1", nhs: nhsA, la: la1, status: "finished", end: "2026-06-17"}) // v3 06-18 10:00Z
		etags := func(r resp) []string {
			out := []string{}
			for _, en := range jpath[[]any](t, r.json(), "entry") {
				out = append(out, jpath[string](t, en, "response", "etag"))
			}
			return out
		}
		for _, tc := range []struct {
			name, query string
			want        []string
		}{
			{"all", "", []string{`W/"3"`, `W/"2"`, `W/"1"`}},
			{"since-instant", "_since=2026-06-16T10:00:00Z", []string{`W/"3"`, `W/"2"`}},
			{"since-after-all", "_since=2026-06-19T00:00:00Z", []string{}},
			{"at-day-of-v2", "_at=2026-06-17", []string{`W/"2"`}},
			{"at-day-of-change", "_at=2026-06-16", []string{`W/"2"`, `W/"1"`}},
			{"at-before-all", "_at=2026-06-01", []string{}},
			{"at-now", "_at=2026-06-20", []string{`W/"3"`}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				p := "EpisodeOfCare/i1/_history"
				if tc.query != "" {
					p += "?" + tc.query
				}
				r := e.do(http.MethodGet, p, la, "")
				require.Equal(t, http.StatusOK, r.Code, r.Body.String())
				if len(tc.want) == 0 {
					_, has := r.json()["entry"]
					assert.False(t, has)
					return
				}
				assert.Equal(t, tc.want, etags(r))
				assert.Equal(t, base+"/"+p, r.link("self"), "the self link gives the window")
			})
		}
		t.Run("nurse-since-audits-what-is-shown", func(t *testing.T) {
			n := len(e.auditOf(nhsA))
			r := e.do(http.MethodGet, "Flag/i1/_history?_since=2026-06-16T10:00:00Z", e.nurse(), "")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Equal(t, []string{`W/"3"`, `W/"2"`}, etags(r))
			assert.Len(t, e.auditOf(nhsA), n+1)
		})
		t.Run("bad-since-400", func(t *testing.T) {
			r := e.do(http.MethodGet, "EpisodeOfCare/i1/_history?_since=soon", la, "")
			require.Equal(t, http.StatusBadRequest, r.Code, r.Body.String())
			assert.Equal(t, []string{"INVALID_SEARCH_DATA@_since"}, r.issues())
		})
	})
}

// TestHazard_TypeHistoryUnauditedWhenAuditRefused: a local authority's
// type-level history of plans shows many children; if their access records
// cannot be written it answers 503 with none of them.
func TestHazard_TypeHistoryUnauditedWhenAuditRefused(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, backend{name: "sqlite", open: func(t testing.TB) store.Store { return openSQLite(t, dir) }})
	e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
	restore := refuseAudit(t, dir)
	for _, p := range []string{"EpisodeOfCare/_history", "Flag/_history"} {
		r := e.do(http.MethodGet, p, e.laToken(la1), "")
		require.Equal(t, http.StatusServiceUnavailable, r.Code, r.Body.String())
		assert.NotContains(t, r.Body.String(), nhsA)
		assert.NotContains(t, r.Body.String(), `"a1"`)
		assert.NotContains(t, r.Body.String(), "/a1")
	}
	restore()
	r := e.do(http.MethodGet, "EpisodeOfCare/_history", e.laToken(la1), "")
	require.Equal(t, http.StatusOK, r.Code, r.Body.String())
	assert.Equal(t, 1, e.allAuditOf(nhsA))
}

// TestCapabilityStatementSaysWhatChanged: what is served is advertised, from
// the same table: _lastUpdated on the stored types, history-type on the
// three whose type history is served, the sorts in the documentation.
func TestCapabilityStatementSaysWhatChanged(t *testing.T) {
	e := newEnv(t, backends()[0])
	r := e.do(http.MethodGet, "metadata", "", "")
	require.Equal(t, http.StatusOK, r.Code)
	res := map[string]map[string]any{}
	for _, x := range jpath[[]any](t, r.json(), "rest", 0, "resource") {
		m := jpath[map[string]any](t, x)
		res[jpath[string](t, m, "type")] = m
	}
	for typ, want := range map[string]bool{"Flag": true, "EpisodeOfCare": true, "Organization": true, "CareTeam": false, "AuditEvent": false} {
		var params, interactions []string
		for _, p := range jpath[[]any](t, res[typ], "searchParam") {
			params = append(params, jpath[string](t, p, "name"))
		}
		for _, i := range jpath[[]any](t, res[typ], "interaction") {
			interactions = append(interactions, jpath[string](t, i, "code"))
		}
		assert.Equal(t, want, slices.Contains(params, "_lastUpdated"), "%s _lastUpdated", typ)
		assert.Equal(t, want, slices.Contains(interactions, "history-type"), "%s history-type", typ)
		assert.Equal(t, want, strings.Contains(jpath[string](t, res[typ], "documentation"), "_sort: _id (the default), _lastUpdated"), "%s _sort", typ)
	}
}

// TestHazard_TypeHistoryShowsPlansPastRetention: a plan that ended longer
// ago than the retention period is gone everywhere, even before the sweeper
// purges it; the type history must not show it (or its child) either.
func TestHazard_TypeHistoryShowsPlansPastRetention(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		la := e.laToken(la1)
		e.putPlan(planSpec{id: "new1", nhs: nhsA, la: la1})
		e.clock.Add(time.Second)
		e.putPlan(planSpec{id: "old1", nhs: nhsB, la: la1, start: "2024-01-10", end: "2025-01-31", status: "finished"})
		require.Equal(t, []string{"new1"}, entryIDs(e.do(http.MethodGet, "EpisodeOfCare", la, ""), "match"), "the search does not show it")
		for _, p := range []string{"EpisodeOfCare/_history", "Flag/_history", "EpisodeOfCare/_history?_count=1"} {
			r := e.do(http.MethodGet, p, la, "")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.NotContains(t, r.Body.String(), "old1", p)
			assert.NotContains(t, r.Body.String(), nhsB, p)
			assert.Len(t, r.entries(""), 1, p)
			assert.Empty(t, r.link("next"), "%s: nothing more to page to", p)
		}
		assert.Equal(t, 0, e.allAuditOf(nhsB), "nothing shown, nothing audited")
	})
}
