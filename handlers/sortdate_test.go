package handlers_test

// _sort=date (issue 15): plans and Flags by their period start, AuditEvents
// by when recorded, on both stores.

import (
	"context"
	"database/sql"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store"
	"cpis/store/dumpfile"
	"cpis/store/sqlite"
)

// datedPlans writes LA001's plans with partial and full period starts, in
// an order that is neither their ids' nor their writes', and LA002's q1.
//
// Their starts, earliest first: d2 2024 (2024-01-01T00:00Z), d6
// 2023-12-31T23:30-01:00 (00:30Z), q1 2024-02 (LA002), d3 2024-03
// (2024-03-01), d0 2024-03-04T23:59:59Z, d1 and d4 2024-03-05 (the same
// instant: the id breaks the tie), d5 2024-03-05T09:30+01:00 (08:30Z).
func datedPlans(e *env) {
	for _, p := range []planSpec{
		{id: "d5", start: "2024-03-05T09:30:00+01:00"},
		{id: "d1", start: "2024-03-05"},
		{id: "d3", start: "2024-03"},
		{id: "d4", start: "2024-03-05"},
		{id: "d2", start: "2024"},
		{id: "d0", start: "2024-03-04T23:59:59Z"},
		{id: "d6", start: "2023-12-31T23:30:00-01:00"},
	} {
		p.nhs, p.la = nhsA, la1
		e.putPlan(p)
		e.clock.Add(time.Minute)
	}
	e.putPlan(planSpec{id: "q1", nhs: nhsA, la: la2, start: "2024-02"})
}

var (
	byDate     = []string{"d2", "d6", "d3", "d0", "d1", "d4", "d5"}
	byDateDesc = []string{"d5", "d4", "d1", "d0", "d3", "d6", "d2"}
)

func TestSortByDate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		datedPlans(e)
		la := e.laToken(la1)
		for _, tc := range []struct {
			name, query string
			want        []string
		}{
			{"plans-earliest-first", "_sort=date", byDate},
			{"plans-latest-first", "_sort=-date", byDateDesc},
			{"plans-earliest-first-id-named", "_sort=date,_id", byDate},
			{"plans-latest-first-id-named", "_sort=-date,-_id", byDateDesc},
			{"plans-latest-first-changed-since", "_sort=-date&_lastUpdated=ge2026-06-15T10:02:00Z", []string{"d4", "d0", "d3", "d6", "d2"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := e.do(http.MethodGet, "EpisodeOfCare?"+tc.query, la, "")
				require.Equal(t, http.StatusOK, r.Code, r.Body.String())
				assert.Equal(t, tc.want, entryIDs(r, "match"))
				assert.Empty(t, r.entries("outcome"), "the sort is applied, not reported")
				self := e.do(http.MethodGet, linkPath(t, r.link("self")), la, "")
				assert.Equal(t, tc.want, entryIDs(self, "match"), "the self link keeps the sort")
				for _, n := range []string{"1", "2", "3"} {
					assert.Equal(t, tc.want, followPages(t, e, "EpisodeOfCare?_count="+n+"&"+tc.query, la, nil), "pages of %s", n)
				}
				assert.Equal(t, tc.want, entryIDs(e.do(http.MethodGet, "Flag?"+tc.query, la, ""), "match"), "an LA's Flags, as their plans")
			})
		}
		t.Run("flags-by-nhs-number", func(t *testing.T) {
			want := []string{"d2", "d6", "q1", "d3", "d0", "d1", "d4", "d5"}
			assert.Equal(t, want, followPages(t, e, flagSearch(nhsA)+"&_sort=date&_count=3", e.nurse(), nil), "across authorities")
			r := e.do(http.MethodGet, flagSearch(nhsA)+"&_sort=-date", e.nurse(), "")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			got := entryIDs(r, "match")
			for i, j := 0, len(want)-1; i < j; i, j = i+1, j-1 {
				want[i], want[j] = want[j], want[i]
			}
			assert.Equal(t, want, got)
			self := e.do(http.MethodGet, linkPath(t, r.link("self")), e.nurse(), "")
			assert.Equal(t, want, entryIDs(self, "match"), "the self link keeps the sort")
		})
		t.Run("link-keeps-the-sort", func(t *testing.T) {
			r := e.do(http.MethodGet, "EpisodeOfCare?_sort=-date&_count=3", la, "")
			next := r.link("next")
			require.NotEmpty(t, next)
			r = e.do(http.MethodGet, linkPath(t, next)+"&_sort=date", la, "")
			require.Equal(t, http.StatusBadRequest, r.Code, "a link is followed as given: %s", r.Body.String())
			r = e.do(http.MethodGet, linkPath(t, next), e.laToken(la2), "")
			require.Equal(t, http.StatusBadRequest, r.Code, "another caller's link: %s", r.Body.String())
			r = e.do(http.MethodGet, linkPath(t, next), la, "")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Equal(t, byDateDesc[3:6], entryIDs(r, "match"))
		})
		for _, tc := range []struct{ name, path, sort string }{
			{"organization-has-no-date", "Organization", "date"},
			{"careteam-has-no-sort", "CareTeam?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|" + nhsA, "-date"},
			{"ties-the-other-way", "EpisodeOfCare", "-date,_id"},
		} {
			t.Run(tc.name+"-ignored", func(t *testing.T) {
				tok := la
				if tc.path[0] == 'C' {
					tok = e.nurse()
				}
				sep := "?"
				if strings.Contains(tc.path, "?") {
					sep = "&"
				}
				r := e.do(http.MethodGet, tc.path+sep+"_sort="+tc.sort, tok, "")
				require.Equal(t, http.StatusOK, r.Code, r.Body.String())
				oo := r.entries("outcome")
				require.Len(t, oo, 1, "the unsupported sort is reported")
				assert.Contains(t, jpath[string](t, oo[0], "issue", 0, "diagnostics"), "_sort="+tc.sort)
				self := e.do(http.MethodGet, linkPath(t, r.link("self")), tok, "")
				assert.Empty(t, self.entries("outcome"), "the self link holds only what was applied")
				r = e.do(http.MethodGet, tc.path+sep+"_sort="+tc.sort, tok, "", "Prefer", "handling=strict")
				require.Equal(t, http.StatusBadRequest, r.Code, r.Body.String())
				assert.Equal(t, "INVALID_SEARCH_DATA", r.code())
			})
		}
	})
}

// TestSortAuditEventsByDate: an AuditEvent's date is when it was recorded.
// The access history is newest first, or oldest first with _sort=date; the
// feed is oldest first only, so -date there is reported, not served.
func TestSortAuditEventsByDate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
		for i := 0; i < 3; i++ {
			e.do(http.MethodGet, flagSearch(nhsA), e.nurse(), "")
			e.clock.Add(25 * time.Hour) // each look counted: a day apart
		}
		recorded := func(r resp) []string {
			out := []string{}
			for _, ev := range r.entries("match") {
				out = append(out, jpath[string](t, ev, "recorded"))
			}
			return out
		}
		history := "AuditEvent?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|" + nhsA
		// Reading the access history is an access too (the fourth); later
		// reads within the day are not counted again.
		require.Equal(t, http.StatusOK, e.do(http.MethodGet, history, e.nurse(), "").Code)
		def := e.do(http.MethodGet, history, e.nurse(), "")
		require.Equal(t, http.StatusOK, def.Code, def.Body.String())
		newest := recorded(def)
		require.Len(t, newest, 4)
		require.True(t, newest[0] > newest[1] && newest[1] > newest[2] && newest[2] > newest[3], "newest first by default: %v", newest)
		oldest := []string{newest[3], newest[2], newest[1], newest[0]}
		for _, tc := range []struct {
			sort string
			want []string
		}{{"-date", newest}, {"date", oldest}} {
			r := e.do(http.MethodGet, history+"&_sort="+tc.sort, e.nurse(), "")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Equal(t, tc.want, recorded(r), tc.sort)
			assert.Empty(t, r.entries("outcome"), tc.sort)
			self := e.do(http.MethodGet, linkPath(t, r.link("self")), e.nurse(), "")
			assert.Equal(t, tc.want, recorded(self), "%s: the self link keeps the sort", tc.sort)
		}

		feed := "AuditEvent?date=ge2026-01-01&_count=2"
		r := e.do(http.MethodGet, feed, e.laToken(la1), "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		natural := recorded(r)
		require.Len(t, natural, 2)
		r = e.do(http.MethodGet, feed+"&_sort=date", e.laToken(la1), "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		assert.Equal(t, natural, recorded(r), "the feed's own order")
		assert.Empty(t, r.entries("outcome"))
		next := r.link("next")
		require.NotEmpty(t, next)
		assert.Equal(t, http.StatusOK, e.do(http.MethodGet, linkPath(t, next), e.laToken(la1), "").Code)

		r = e.do(http.MethodGet, feed+"&_sort=-date", e.laToken(la1), "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		assert.Equal(t, natural, recorded(r), "not served newest first")
		oo := r.entries("outcome")
		require.Len(t, oo, 1, "and said so")
		assert.Contains(t, jpath[string](t, oo[0], "issue", 0, "diagnostics"), "_sort=-date")
		self := e.do(http.MethodGet, linkPath(t, r.link("self")), e.laToken(la1), "")
		assert.Empty(t, self.entries("outcome"), "the self link holds only what was applied")
		r = e.do(http.MethodGet, feed+"&_sort=-date", e.laToken(la1), "", "Prefer", "handling=strict")
		require.Equal(t, http.StatusBadRequest, r.Code, r.Body.String())
		assert.Equal(t, "INVALID_SEARCH_DATA", r.code())
		r = e.do(http.MethodGet, history+"&_sort=date,_id", e.nurse(), "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		assert.Equal(t, newest, recorded(r), "accesses have no id order: the default order, and said so")
		require.Len(t, r.entries("outcome"), 1)
	})
}

// TestDumpRestoreKeepsTheDateOrder: a store dumped to files (which do not
// carry the period start) and loaded into each backend sorts by date as
// the original did.
func TestDumpRestoreKeepsTheDateOrder(t *testing.T) {
	src := newEnv(t, backends()[0])
	datedPlans(src)
	ctx := context.Background()
	dir := t.TempDir()
	_, err := dumpfile.Write(ctx, dir, src.store.(store.Dumper), dumpfile.Options{})
	require.NoError(t, err)
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, backend{name: b.name, open: func(t testing.TB) store.Store {
			dst := b.open(t)
			_, err := dumpfile.Load(ctx, dir, dst, false, dumpfile.Options{})
			require.NoError(t, err)
			return dst
		}})
		for sort, want := range map[string][]string{"date": byDate, "-date": byDateDesc} {
			assert.Equal(t, want, followPages(t, e, "EpisodeOfCare?_count=2&_sort="+sort, e.laToken(la1), nil), sort)
		}
	})
}

// TestCapabilityStatementSaysWhatSortsByDate: the types whose searches
// take _sort=date say so, as the other sorts are declared (from the same
// table that serves them), and the others do not.
func TestCapabilityStatementSaysWhatSortsByDate(t *testing.T) {
	e := newEnv(t, backends()[0])
	r := e.do(http.MethodGet, "metadata", "", "")
	require.Equal(t, http.StatusOK, r.Code)
	docs := map[string]string{}
	for _, x := range jpath[[]any](t, r.json(), "rest", 0, "resource") {
		docs[jpath[string](t, x, "type")] = jpath[string](t, x, "documentation")
	}
	for typ, want := range map[string]bool{"Flag": true, "EpisodeOfCare": true, "AuditEvent": true, "Organization": false, "CareTeam": false} {
		assert.Equal(t, want, strings.Contains(docs[typ], "_sort=date"), "%s _sort=date", typ)
	}
	assert.Contains(t, docs["EpisodeOfCare"], "period.start")
	assert.Contains(t, docs["EpisodeOfCare"], "comes last")
	assert.Contains(t, docs["AuditEvent"], "recorded")
}

// TestSortByDateOnAStoreFromTheReleaseBefore: plans the server wrote into
// a SQLite store of the release before (layout 12: no start column) sort by
// date, through the engine, once this release has opened the store.
func TestSortByDateOnAStoreFromTheReleaseBefore(t *testing.T) {
	dir := t.TempDir()
	inDir := backend{name: "sqlite", open: func(t testing.TB) store.Store { return openSQLite(t, dir) }}
	before := newEnv(t, inDir)
	datedPlans(before)
	require.NoError(t, before.store.Close())
	// Back to the layout the release before wrote: the same rows and
	// bodies, without the start column and its index (and with a
	// subscription's events a row each).
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, sqlite.FileName))
	require.NoError(t, err)
	for _, st := range []string{`DROP INDEX resources_owner_start`, `ALTER TABLE resources DROP COLUMN start`,
		`ALTER TABLE history DROP COLUMN start`, `DROP TABLE sub_pages`,
		`CREATE TABLE sub_events (sub TEXT NOT NULL, number INTEGER NOT NULL, seq INTEGER NOT NULL, recorded INTEGER NOT NULL,
			aid TEXT NOT NULL DEFAULT '', PRIMARY KEY (sub, number)) WITHOUT ROWID`, `PRAGMA user_version = 12`} {
		_, err := db.Exec(st)
		require.NoError(t, err, st)
	}
	require.NoError(t, db.Close())

	e := newEnv(t, inDir)
	for sort, want := range map[string][]string{"date": byDate, "-date": byDateDesc} {
		assert.Equal(t, want, followPages(t, e, "EpisodeOfCare?_count=2&_sort="+sort, e.laToken(la1), nil), sort)
		assert.Equal(t, want, entryIDs(e.do(http.MethodGet, "Flag?_sort="+sort, e.laToken(la1), ""), "match"), sort)
	}
}
