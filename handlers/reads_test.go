package handlers_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/auth"
	"cpis/handlers"
	"cpis/store"
	"cpis/store/sqlite"
)

// TestHazard_IdentifierSearchMissesPlan: a health user's search of a
// patient's plans by the LA's identifier was filtered after paging, so a
// page that did not hold the plan answered total 0 with no next link, and
// _summary=count always said 0, although the plan exists. The store now
// applies the identifier before paging and counting.
func TestHazard_IdentifierSearchMissesPlan(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		// The plan sought sorts after the patient's other plans.
		e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1, ident: "OTHER1"})
		e.putPlan(planSpec{id: "a2", nhs: nhsA, la: la1})
		e.putPlan(planSpec{id: "a3", nhs: nhsA, la: la1, ident: "OTHER3"})
		e.putPlan(planSpec{id: "a4", nhs: nhsA, la: la1, ident: "OTHER4"})
		e.putPlan(planSpec{id: "a5", nhs: nhsA, la: la2, ident: "SOUGHT"})
		e.putPlan(planSpec{id: "b1", nhs: nhsB, la: la1, ident: "SOUGHT"})
		search := "EpisodeOfCare?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|" + nhsA + "&identifier=https://la002.example/plan-id|SOUGHT"
		for _, count := range []string{"1", "3"} {
			t.Run("_count="+count, func(t *testing.T) {
				var ids []string
				next := search + "&_count=" + count
				for pages := 0; next != ""; pages++ {
					require.Less(t, pages, 10)
					r := e.do(http.MethodGet, next, e.nurse(), "")
					require.Equal(t, http.StatusOK, r.Code, r.Body.String())
					assert.Equal(t, 1, r.total(), "the total counts the plan whichever page holds it")
					for _, m := range r.entries("match") {
						ids = append(ids, jpath[string](t, m, "id"))
					}
					next = r.link("next")
				}
				assert.Equal(t, []string{"a5"}, ids, "the plan is found")
			})
		}
		t.Run("_summary=count", func(t *testing.T) {
			r := e.do(http.MethodGet, search+"&_summary=count", e.nurse(), "")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Equal(t, 1, r.total())
		})
		t.Run("audit-names-every-plan-matched", func(t *testing.T) {
			recs, err := e.store.AuditBySubject(context.Background(), nhsA, time.Time{}, 100)
			require.NoError(t, err)
			require.NotEmpty(t, recs)
			for _, a := range recs {
				assert.Equal(t, []string{la2}, a.Owners, "the LA whose plan matched is told, and only it")
			}
		})
		t.Run("two-identifiers-400", func(t *testing.T) {
			r := e.do(http.MethodGet, search+"&identifier=https://la001.example/plan-id|OTHER1", e.nurse(), "")
			assert.Equal(t, http.StatusBadRequest, r.Code)
			assert.Equal(t, "INVALID_SEARCH_DATA", r.code())
		})
	})
}

// TestHazard_SilentReadByIDShowsChildUnaudited: a B0170 user could read any
// Flag by a guessed id with silent=true (or IsUnscheduledAccessEvent: false)
// and see the child's NHS number with no AuditEvent. A silent read must name
// the patient: reads, vreads and history by id are always audited, so the
// silent switch is refused there and a B0170-only user may not read by id.
func TestHazard_SilentReadByIDShowsChildUnaudited(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: "guessable", nhs: nhsA, la: la1})
		gp, both := e.gp(), e.userToken("B0107", "B0170")
		for _, path := range []string{"Flag/guessable", "EpisodeOfCare/guessable", "Flag/guessable/_history", "Flag/guessable/_history/1", "EpisodeOfCare/guessable/_history", "EpisodeOfCare/guessable/_history/1"} {
			for _, tc := range []struct {
				name, token, query string
				headers            []string
			}{
				{"b0170-silent-param", gp, "?silent=true", nil},
				{"b0170-silent-header", gp, "", []string{"IsUnscheduledAccessEvent", "false"}},
				{"b0170-no-switch", gp, "", nil},
				{"both-codes-silent-param", both, "?silent=true", nil},
				{"both-codes-silent-header", both, "", []string{"IsUnscheduledAccessEvent", "false"}},
			} {
				t.Run(path+"/"+tc.name+"-403", func(t *testing.T) {
					r := e.do(http.MethodGet, path+tc.query, tc.token, "", tc.headers...)
					require.Equal(t, http.StatusForbidden, r.Code, r.Body.String())
					assert.Equal(t, "ACCESS_DENIED", r.code())
					assert.NotContains(t, r.Body.String(), nhsA)
				})
			}
		}
		assert.Empty(t, e.auditOf(nhsA), "nothing was shown")
		t.Run("audited-read-200", func(t *testing.T) {
			r := e.do(http.MethodGet, "Flag/guessable?silent=false", both, "")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Len(t, e.auditOf(nhsA), 1, "a read by id is always audited")
		})
	})
}

// TestHazard_ReadOfAnotherLAsIDRevealsIt: a local authority reading another
// LA's resource by id got 403, telling it the id exists (an existence
// oracle over guessable ids). It now gets exactly the answer a missing id
// gets; a write over another's id with If-Match gets the 412 a missing id
// gets, and a delete the 404.
func TestHazard_ReadOfAnotherLAsIDRevealsIt(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: "theirs", nhs: nhsB, la: la2})
		e.putOrg("org2", la2, "Local Authority Two")
		la := e.laToken(la1)
		same := func(t *testing.T, method, theirs, missing, body string, headers ...string) {
			t.Helper()
			a := e.do(method, theirs, la, body, headers...)
			m := e.do(method, missing, la, body, headers...)
			assert.Equal(t, m.Code, a.Code, a.Body.String())
			assert.NotContains(t, a.Body.String(), nhsB)
			norm := func(r resp, id string) string { return strings.ReplaceAll(r.Body.String(), id, "ID") }
			assert.Equal(t, norm(m, "missing"), norm(a, "theirs"), "the same answer as a missing id")
			assert.Equal(t, m.Header().Get("ETag"), a.Header().Get("ETag"))
		}
		for _, p := range []string{"EpisodeOfCare/%s", "Flag/%s", "EpisodeOfCare/%s/_history", "Flag/%s/_history", "EpisodeOfCare/%s/_history/1", "Flag/%s/_history/1"} {
			t.Run("GET-"+p+"-404", func(t *testing.T) {
				same(t, http.MethodGet, fmt.Sprintf(p, "theirs"), fmt.Sprintf(p, "missing"), "")
				assert.Equal(t, http.StatusNotFound, e.do(http.MethodGet, fmt.Sprintf(p, "theirs"), la, "").Code)
			})
		}
		t.Run("GET-Organization-404", func(t *testing.T) {
			r := e.do(http.MethodGet, "Organization/org2", la, "")
			m := e.do(http.MethodGet, "Organization/missing", la, "")
			assert.Equal(t, http.StatusNotFound, r.Code)
			assert.Equal(t, m.Body.String(), r.Body.String())
		})
		t.Run("DELETE-404", func(t *testing.T) {
			same(t, http.MethodDelete, "EpisodeOfCare/theirs", "EpisodeOfCare/missing", "")
		})
		t.Run("PUT-with-If-Match-412", func(t *testing.T) {
			a := e.do(http.MethodPut, "EpisodeOfCare/theirs", la, planJSON(planSpec{id: "theirs", nhs: nhsC, la: la1}), "If-Match", `W/"1"`)
			m := e.do(http.MethodPut, "EpisodeOfCare/missing", la, planJSON(planSpec{id: "missing", nhs: nhsC, la: la1}), "If-Match", `W/"1"`)
			assert.Equal(t, http.StatusPreconditionFailed, a.Code, a.Body.String())
			assert.Equal(t, strings.ReplaceAll(m.Body.String(), "missing", "ID"), strings.ReplaceAll(a.Body.String(), "theirs", "ID"))
		})
		t.Run("PUT-409-names-no-one", func(t *testing.T) {
			// Without If-Match a free id is created, so no answer can hide
			// that this one is taken: 409, naming no organisation.
			r := e.do(http.MethodPut, "EpisodeOfCare/theirs", la, planJSON(planSpec{id: "theirs", nhs: nhsC, la: la1}))
			assert.Equal(t, http.StatusConflict, r.Code, r.Body.String())
			assert.NotContains(t, r.Body.String(), la2)
			assert.NotContains(t, r.Body.String(), "another organisation")
		})
		r := e.do(http.MethodGet, "EpisodeOfCare/theirs", e.laToken(la2), "")
		require.Equal(t, http.StatusOK, r.Code)
		assert.Equal(t, `W/"1"`, r.Header().Get("ETag"), "nothing changed")
	})
}

// TestHazard_PatientDataKeptInCaches: answers carrying a child's record
// (or a paging link, or an AuditEvent) had no Cache-Control, so a browser
// or shared cache could keep them. Every answer under the FHIR base is now
// no-store, except the CapabilityStatement and the conformance resources.
func TestHazard_PatientDataKeptInCaches(t *testing.T) {
	e := newEnv(t, backends()[0])
	e.putOrg("org1", la1, "Local Authority One")
	e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
	nurse, la := e.nurse(), e.laToken(la1)
	for _, tc := range []struct {
		method, path, token, body string
		status                    int
	}{
		{"GET", flagSearch(nhsA), nurse, "", 200},
		{"GET", flagSearch(nhsA) + "&silent=true", e.gp(), "", 200},
		{"GET", "Flag/a1", nurse, "", 200},
		{"GET", "EpisodeOfCare/a1/_history/1", nurse, "", 200},
		{"GET", "EpisodeOfCare/a1/_history", nurse, "", 200},
		{"GET", "AuditEvent?patient:identifier=" + nhsA, nurse, "", 200},
		{"GET", "AuditEvent?date=ge2026-01-01", la, "", 200},
		{"GET", "Organization/org1", nurse, "", 200},
		{"PUT", "EpisodeOfCare/a2", la, planJSON(planSpec{id: "a2", nhs: nhsA, la: la1}), 201},
		{"GET", "Flag/missing", nurse, "", 404},
		{"GET", flagSearch(nhsA), "", "", 401},
		{"GET", flagSearch("9449306754"), nurse, "", 400},
		{"GET", "Nothing/here", nurse, "", 404},
		{"GET", "_ping", nurse, "", 200},
	} {
		t.Run(tc.method+"-"+tc.path, func(t *testing.T) {
			r := e.do(tc.method, tc.path, tc.token, tc.body)
			require.Equal(t, tc.status, r.Code, r.Body.String())
			assert.Equal(t, "no-store", r.Header().Get("Cache-Control"))
		})
	}
	for _, path := range []string{"metadata", "StructureDefinition/CPIS-Flag", "CodeSystem/plan-type"} {
		t.Run("cacheable-"+path, func(t *testing.T) {
			r := e.do(http.MethodGet, path, nurse, "")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			assert.Empty(t, r.Header().Get("Cache-Control"), "the same for every caller")
		})
	}
}

// racingStore is the real store with a real competing writer: before each
// commit of an EpisodeOfCare it writes the current record again as the next
// version (through the same store), so the commit genuinely loses the race.
type racingStore struct {
	store.Store
}

func (s racingStore) Commit(ctx context.Context, ws []store.Write) error {
	for _, w := range ws {
		if w.Record.Type != "EpisodeOfCare" || w.Expect == 0 {
			continue
		}
		cur, err := s.Store.Get(ctx, w.Record.Type, w.Record.ID)
		if err != nil || cur.Deleted {
			return err
		}
		next := w.Record
		next.Version, next.Updated = cur.Version+1, cur.Updated.Add(time.Millisecond)
		if next.Deleted { // a racing update of a plan being deleted
			next = cur
			next.Version, next.Updated = cur.Version+1, cur.Updated.Add(time.Millisecond)
		}
		if err := s.Store.Commit(ctx, []store.Write{{Record: next, Expect: cur.Version}}); err != nil {
			return err
		}
	}
	return s.Store.Commit(ctx, ws)
}

// TestHazard_RacingWriteReportedAsStaleIfMatch: a write that lost every
// retry to concurrent writers answered 412 Precondition Failed although the
// client sent no If-Match, telling it its pinned version was stale. 412 is
// now only for a version the client pinned; a write that keeps losing races
// without one is 409 Conflict.
func TestHazard_RacingWriteReportedAsStaleIfMatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		// Creates (Expect 0) do not race; every later write does.
		r := newEnv(t, b, func(d *handlers.Deps) { d.Store = racingStore{d.Store} })
		r.putPlan(planSpec{id: "p1", nhs: nhsA, la: la1})
		r.putPlan(planSpec{id: "p2", nhs: nhsA, la: la1})
		la := r.laToken(la1)
		body := planJSON(planSpec{id: "p1", nhs: nhsA, la: la1, planType: "LAC"})
		t.Run("put-without-if-match-409", func(t *testing.T) {
			w := r.do(http.MethodPut, "EpisodeOfCare/p1", la, body)
			require.Equal(t, http.StatusConflict, w.Code, w.Body.String())
			assert.Equal(t, "INVALID_VALUE", w.code())
			assert.Equal(t, "conflict", jget(t, w.json(), "issue", 0, "code"))
		})
		t.Run("put-with-if-match-412", func(t *testing.T) {
			cur := r.do(http.MethodGet, "EpisodeOfCare/p1", la, "")
			w := r.do(http.MethodPut, "EpisodeOfCare/p1", la, body, "If-Match", cur.Header().Get("ETag"))
			require.Equal(t, http.StatusPreconditionFailed, w.Code, w.Body.String())
			assert.Equal(t, "PRECONDITION_FAILED", w.code())
		})
		t.Run("delete-with-if-match-412", func(t *testing.T) {
			cur := r.do(http.MethodGet, "EpisodeOfCare/p2", la, "")
			w := r.do(http.MethodDelete, "EpisodeOfCare/p2", la, "", "If-Match", cur.Header().Get("ETag"))
			require.Equal(t, http.StatusPreconditionFailed, w.Code, w.Body.String())
		})
		t.Run("delete-without-if-match-409", func(t *testing.T) {
			w := r.do(http.MethodDelete, "EpisodeOfCare/p2", la, "")
			require.Equal(t, http.StatusConflict, w.Code, w.Body.String())
		})
	})
}

// TestHazard_CorruptIndexShowsAnotherChild: a search by NHS number trusted
// the store's subject index, so a corrupt index (here: the subject column
// of a real SQLite file changed behind the server's back) would show
// another child's plan as this child's. Every record returned is now
// checked against the NHS number asked, by its subject and by the body
// served; a mismatch is a 503 and an ERROR log, never an answer.
func TestHazard_CorruptIndexShowsAnotherChild(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, backend{name: "sqlite", open: func(t testing.TB) store.Store { return openSQLite(t, dir) }})
	e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
	e.putPlan(planSpec{id: "b1", nhs: nhsB, la: la2})
	nurse, gp := e.nurse(), e.gp()
	for _, path := range []string{flagSearch(nhsA), flagSearch(nhsA) + "&_count=1", "EpisodeOfCare?patient:identifier=" + nhsA} {
		r := e.do(http.MethodGet, path, nurse, "")
		require.Equal(t, http.StatusOK, r.Code, "before the corruption: %s", r.Body.String())
	}

	db, err := sql.Open("sqlite", filepath.Join(dir, sqlite.FileName))
	require.NoError(t, err)
	defer db.Close()
	res, err := db.Exec(`UPDATE resources SET subject = ? WHERE id = 'b1'`, nhsA)
	require.NoError(t, err)
	n, err := res.RowsAffected()
	require.NoError(t, err)
	require.EqualValues(t, 1, n)

	before := len(e.auditOf(nhsA))
	for _, tc := range []struct{ path, token string }{
		{flagSearch(nhsA), nurse},
		{flagSearch(nhsA) + "&silent=true", gp},
		{flagSearch(nhsA) + "&_summary=count", nurse},
		{flagSearch(nhsA) + "&_count=1", nurse},
		{"EpisodeOfCare?patient:identifier=" + nhsA, nurse},
		{"AuditEvent?patient:identifier=" + nhsA, nurse},
	} {
		t.Run(tc.path, func(t *testing.T) {
			r := e.do(http.MethodGet, tc.path, tc.token, "")
			require.Equal(t, http.StatusServiceUnavailable, r.Code, r.Body.String())
			assert.Equal(t, "SERVICE_UNAVAILABLE", r.code())
			assert.NotContains(t, r.Body.String(), nhsB)
		})
	}
	assert.Len(t, e.auditOf(nhsA), before, "nothing was shown, so nothing was audited")
	assert.Contains(t, e.logs.String(), `"level":"ERROR","msg":"search index mismatch`)
	r := e.do(http.MethodGet, flagSearch(nhsB), nurse, "")
	require.Equal(t, http.StatusOK, r.Code)
	assert.Equal(t, 0, r.total(), "the corrupt index no longer finds b1 under its own number; that is for the operator the ERROR log calls")
}

// TestHazard_PagingLinkCarriesNHSNumber: paging links repeated the search,
// NHS number included (also after a POST _search, whose point is to keep
// the number out of URLs), so it reached browser histories, proxies and
// access logs; and anyone could follow or alter one. Links are now opaque,
// sealed cursors bound to the caller, carrying the whole search.
func TestHazard_PagingLinkCarriesNHSNumber(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		for i := 0; i < 7; i++ {
			e.putPlan(planSpec{id: fmt.Sprintf("p%d", i), nhs: nhsA, la: la1})
		}
		e.putPlan(planSpec{id: "q1", nhs: nhsB, la: la1})
		nurse := e.nurse()
		noPatient := func(t *testing.T, r resp) {
			t.Helper()
			for _, rel := range []string{"self", "next"} {
				l := r.link(rel)
				assert.NotContains(t, l, nhsA, rel)
				assert.NotContains(t, l, "nhs-number", rel)
				if l != "" {
					assert.Regexp(t, `^`+base+`/[A-Za-z]+\?_cursor=[A-Za-z0-9_-]+$`, l, "a link is the cursor and nothing else")
				}
			}
		}
		follow := func(t *testing.T, first resp, token string) (ids []string, pages int, links []string) {
			t.Helper()
			r := first
			for {
				require.Equal(t, http.StatusOK, r.Code, r.Body.String())
				noPatient(t, r)
				assert.Equal(t, 7, r.total())
				for _, m := range r.entries("match") {
					ids = append(ids, jpath[string](t, m, "id"))
				}
				pages++
				next := r.link("next")
				if next == "" {
					return ids, pages, links
				}
				links = append(links, next)
				require.Less(t, pages, 10)
				r = e.do(http.MethodGet, next, token, "")
			}
		}
		all := []string{"p0", "p1", "p2", "p3", "p4", "p5", "p6"}
		var nextLink string
		t.Run("get-pages-complete", func(t *testing.T) {
			ids, pages, links := follow(t, e.do(http.MethodGet, flagSearch(nhsA)+"&_count=3", nurse, ""), nurse)
			assert.Equal(t, all, ids, "every plan once, in order")
			assert.Equal(t, 3, pages)
			nextLink = links[0]
		})
		t.Run("post-search-pages-complete", func(t *testing.T) {
			first := e.doForm("Flag/_search", nurse, "patient:identifier="+url.QueryEscape("https://fhir.nhs.uk/Id/nhs-number|"+nhsA)+"&_count=3")
			ids, pages, _ := follow(t, first, nurse)
			assert.Equal(t, all, ids)
			assert.Equal(t, 3, pages)
		})
		t.Run("silent-pages-stay-silent", func(t *testing.T) {
			gp := e.gp()
			before := len(e.auditOf(nhsA))
			ids, _, _ := follow(t, e.do(http.MethodGet, flagSearch(nhsA)+"&_count=3&silent=true", gp, ""), gp)
			assert.Equal(t, all, ids)
			assert.Len(t, e.auditOf(nhsA), before, "a silent search's pages are silent too")
		})
		t.Run("self-link-repeats-the-page", func(t *testing.T) {
			r := e.do(http.MethodGet, nextLink, nurse, "")
			self := e.do(http.MethodGet, r.link("self"), nurse, "")
			require.Equal(t, http.StatusOK, self.Code, self.Body.String())
			assert.Equal(t, r.entries("match"), self.entries("match"))
		})
		refused := func(t *testing.T, path, token string) {
			t.Helper()
			r := e.do(http.MethodGet, path, token, "")
			require.Equal(t, http.StatusBadRequest, r.Code, r.Body.String())
			assert.Equal(t, "INVALID_SEARCH_DATA", r.code())
			assert.NotContains(t, r.Body.String(), nhsA)
		}
		t.Run("another-user-400", func(t *testing.T) {
			refused(t, nextLink, e.namedUser("u-other", "Other Nurse", "B0107"))
		})
		t.Run("another-role-of-the-user-400", func(t *testing.T) {
			tok, err := e.key.MintUser(auth.UserToken{
				Name: "Dr Jane Smith", UserID: "555021935107", RoleID: "999999999999", RoleName: "Nurse", RoleCode: "S8000:G8000:R8001",
				OrgCode: "RBA", OrgName: "Somerset NHS Foundation Trust", Activities: []string{"B0107"},
			}, auth.LocalIssuer, auth.LocalAudience, time.Now(), time.Hour)
			require.NoError(t, err)
			refused(t, nextLink, tok)
		})
		t.Run("a-local-authority-400", func(t *testing.T) {
			refused(t, nextLink, e.laToken(la1))
		})
		t.Run("tampered-400", func(t *testing.T) {
			i := strings.Index(nextLink, "_cursor=") + len("_cursor=") + 20
			c := byte('A')
			if nextLink[i] == 'A' {
				c = 'B'
			}
			refused(t, nextLink[:i]+string(c)+nextLink[i+1:], nurse)
			refused(t, nextLink[:len(nextLink)-4], nurse)
		})
		t.Run("another-type-400", func(t *testing.T) {
			refused(t, strings.Replace(nextLink, "/Flag?", "/EpisodeOfCare?", 1), nurse)
		})
		t.Run("with-other-parameters-400", func(t *testing.T) {
			refused(t, nextLink+"&patient:identifier="+nhsB, nurse)
		})
		t.Run("unsealed-cursor-400", func(t *testing.T) {
			refused(t, flagSearch(nhsA)+"&_cursor=p2", nurse)
			refused(t, "Flag?_cursor=p2", nurse)
		})
		t.Run("expired-400", func(t *testing.T) {
			e.clock.Add(2 * time.Hour)
			refused(t, nextLink, nurse)
		})
	})
}

// TestHazard_FeedLinkFollowedByAnotherLA: the local authority feed's next
// link is sealed and bound to the LA too, and paging it is still complete.
func TestHazard_FeedLinkFollowedByAnotherLA(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
		for i := 0; i < 3; i++ {
			require.Equal(t, http.StatusOK, e.do(http.MethodGet, flagSearch(nhsA), e.namedUser(fmt.Sprintf("u%d", i), "Nurse", "B0107"), "").Code)
		}
		la := e.laToken(la1)
		r := e.do(http.MethodGet, "AuditEvent?date=ge2026-01-01&_count=1", la, "")
		var ids, links []string
		for pages := 0; ; pages++ {
			require.Less(t, pages, 10)
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			for _, m := range r.entries("match") {
				ids = append(ids, jpath[string](t, m, "id"))
			}
			next := r.link("next")
			if len(r.entries("match")) == 0 {
				break
			}
			assert.Regexp(t, `^`+base+`/AuditEvent\?_cursor=[A-Za-z0-9_-]+$`, next)
			links = append(links, next)
			r = e.do(http.MethodGet, next, la, "")
		}
		assert.Len(t, ids, 3, "every access, once")
		require.NotEmpty(t, links)
		other := e.do(http.MethodGet, links[0], e.laToken(la2), "")
		assert.Equal(t, http.StatusBadRequest, other.Code, other.Body.String())
		assert.Equal(t, "INVALID_SEARCH_DATA", other.code())
	})
}
