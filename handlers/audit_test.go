package handlers_test

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/handlers"
	"cpis/handlers/registry"
	"cpis/store"
	"cpis/store/sqlite"
)

// auditOf returns the notifying access records about a patient.
func (e *env) auditOf(nhs string) []store.AuditRecord {
	e.t.Helper()
	recs, err := e.store.AuditBySubject(context.Background(), nhs, time.Time{}, 1000)
	require.NoError(e.t, err)
	return recs
}

func TestSearchIsAuditedBeforeTheAnswer(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
		e.putPlan(planSpec{id: "a2", nhs: nhsA, la: la2})

		r := e.do(http.MethodGet, flagSearch(nhsA), e.nurse(), "")
		require.Equal(t, http.StatusOK, r.Code)
		recs := e.auditOf(nhsA)
		require.Len(t, recs, 1, "one event per patient per search")
		a := recs[0]
		assert.Equal(t, []string{la1, la2}, a.Owners, "both LAs are told")
		r = e.do(http.MethodGet, "AuditEvent?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|"+nhsA, e.nurse(), "")
		require.Equal(t, http.StatusOK, r.Code, r.Body.String())
		events := r.entries("match")
		require.Len(t, events, 1)
		ev := events[0]
		body := r.Body.String()
		for _, want := range []string{"Dr Jane Smith", "555021935107", "Nurse Access Role", "RBA", "Somerset NHS Foundation Trust", nhsA, "search-type", "https://fhir.cpis.dev/StructureDefinition/CPIS-AuditEvent"} {
			assert.Contains(t, body, want)
		}
		assert.Equal(t, "0", ev["outcome"])
		assert.Equal(t, "2 plans found", ev["outcomeDesc"])
		var query string
		for _, en := range jpath[[]any](t, ev, "entity") {
			if q, ok := jpath[map[string]any](t, en)["query"].(string); ok {
				b, err := base64.StdEncoding.DecodeString(q)
				require.NoError(t, err)
				query = string(b)
			}
		}
		assert.Equal(t, "Flag?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|"+nhsA+"&_count=50", query)

		// A search that finds nothing is audited too: the number was looked up.
		e.do(http.MethodGet, flagSearch(nhsC), e.nurse(), "")
		assert.Len(t, e.auditOf(nhsC), 1)
		// A read by id is audited (after the search and the nurse's read of
		// the access history above, which is an access too).
		e.do(http.MethodGet, "EpisodeOfCare/a1", e.namedUser("u2", "Nurse Two", "B0107"), "")
		assert.Len(t, e.auditOf(nhsA), 3)
	})
}

func TestSilentReadsAreNotAudited(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
		gp := e.gp()
		require.Equal(t, http.StatusOK, e.do(http.MethodGet, flagSearch(nhsA)+"&silent=true", gp, "").Code)
		require.Equal(t, http.StatusOK, e.do(http.MethodGet, flagSearch(nhsA), gp, "", "IsUnscheduledAccessEvent", "false").Code)
		assert.Empty(t, e.auditOf(nhsA))
		feed := e.do(http.MethodGet, "AuditEvent?date=ge2026-01-01", e.laToken(la1), "")
		assert.Empty(t, feed.entries("match"), "the LA is not told of silent reads")
		logs := e.logs.String()
		assert.Equal(t, 2, strings.Count(logs, `"msg":"silent read"`), "silent reads go to the security log")
		assert.Contains(t, logs, `"subject_hash"`)
	})
}

// TestHazard_SilentReadShownUnrecorded: a silent read's only record is its
// security-log line, but the line went through slog.Logger, which drops a
// line below the log level (CPIS_LOG_LEVEL=warn dropped every one) and
// discards the error of a write that failed: the child's plan was shown
// with no trace of the access. Now the line is written whatever the level,
// and a silent read whose line cannot be written fails with 503 and no
// data, as an audited read whose AuditEvent cannot be stored does.
func TestHazard_SilentReadShownUnrecorded(t *testing.T) {
	silentReads := []struct {
		path    string
		headers []string
	}{
		{flagSearch(nhsA) + "&silent=true", nil},
		{flagSearch(nhsA), []string{"IsUnscheduledAccessEvent", "false"}},
		{"EpisodeOfCare?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|" + nhsA + "&silent=true", nil},
	}
	forEachBackend(t, func(t *testing.T, b backend) {
		t.Run("unwritable-log", func(t *testing.T) {
			out := &failingLog{}
			m := handlers.NewPrometheus("test")
			e := newEnv(t, b, func(d *handlers.Deps) {
				d.SecurityLog = slog.New(m.SecurityLog(slog.NewJSONHandler(out, nil))).With("log", "security")
				d.Metrics = m
			})
			e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
			for _, rd := range silentReads {
				r := e.do(http.MethodGet, rd.path, e.gp(), "", rd.headers...)
				require.Equal(t, http.StatusServiceUnavailable, r.Code, "%s: %s", rd.path, r.Body.String())
				assert.Equal(t, "SERVICE_UNAVAILABLE", r.code())
				assert.NotContains(t, r.Body.String(), nhsA, "no data in the refusal")
				assert.NotContains(t, r.Body.String(), `"a1"`)
			}
			assert.Equal(t, len(silentReads), out.tries(), "each read tried to write its line")
			// A search that finds no plan looked the number up, which is
			// recorded as an audited search's is: refused too.
			r := e.do(http.MethodGet, flagSearch(nhsB)+"&silent=true", e.gp(), "")
			assert.Equal(t, http.StatusServiceUnavailable, r.Code, r.Body.String())
			assert.Equal(t, len(silentReads)+1, out.tries())
			// Counted by themselves, for an alert.
			rec := httptest.NewRecorder()
			m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
			assert.Contains(t, rec.Body.String(), fmt.Sprintf("\ncpis_security_log_errors_total %d\n", len(silentReads)+1))
		})
		t.Run("log-level-warn", func(t *testing.T) {
			var out syncBuffer
			e := newEnv(t, b, func(d *handlers.Deps) {
				d.SecurityLog = slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelWarn})).With("log", "security")
			})
			e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
			for _, rd := range silentReads {
				r := e.do(http.MethodGet, rd.path, e.gp(), "", rd.headers...)
				require.Equal(t, http.StatusOK, r.Code, "%s: %s", rd.path, r.Body.String())
			}
			lines := out.String()
			assert.Equal(t, len(silentReads), strings.Count(lines, `"msg":"silent read"`), lines)
			assert.Equal(t, len(silentReads), strings.Count(lines, `"log":"security"`), lines)
			assert.Contains(t, lines, `"subject_hash"`)
			assert.NotContains(t, lines, nhsA)
		})
	})
}

// failingLog is a log output whose every write fails, as a closed pipe's or
// a full disk's does.
type failingLog struct {
	mu sync.Mutex
	n  int
}

func (f *failingLog) Write([]byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	return 0, errors.New("the log's output is gone")
}

func (f *failingLog) tries() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

func TestLocalAuthorityReadsAreRecordedButNotNotified(t *testing.T) {
	e := newEnv(t, backends()[0])
	e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
	require.Equal(t, http.StatusOK, e.do(http.MethodGet, "EpisodeOfCare/a1", e.laToken(la1), "").Code)
	assert.Empty(t, e.auditOf(nhsA), "an LA reading its own plan is not an access to notify")
}

func TestAccessHistory(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
		alice := e.namedUser("u-alice", "Alice", "B0107")
		bob := e.namedUser("u-bob", "Bob", "B0107")
		// Alice looks three times within a day: counted once, the first.
		e.do(http.MethodGet, flagSearch(nhsA), alice, "")
		first := e.clock.Now()
		e.clock.Add(time.Hour)
		e.do(http.MethodGet, flagSearch(nhsA), alice, "")
		e.clock.Add(20 * time.Hour)
		e.do(http.MethodGet, flagSearch(nhsA), bob, "")
		e.do(http.MethodGet, flagSearch(nhsA), alice, "")
		e.clock.Add(4 * time.Hour) // 25 h after Alice's first look
		e.do(http.MethodGet, flagSearch(nhsA), alice, "")

		r := e.do(http.MethodGet, "AuditEvent?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|"+nhsA, e.nurse(), "")
		require.Equal(t, http.StatusOK, r.Code)
		var who []string
		var when []string
		for _, ev := range r.entries("match") {
			who = append(who, jpath[string](t, ev, "agent", 0, "name"))
			when = append(when, jpath[string](t, ev, "recorded"))
		}
		assert.Equal(t, []string{"Alice", "Bob", "Alice"}, who, "newest first, repeats within 24 h counted once")
		assert.Equal(t, first.Format("2006-01-02T15:04:05.000Z"), when[2], "the first of the repeats is kept")

		// At most 25, the most recent.
		for i := 0; i < 30; i++ {
			e.do(http.MethodGet, flagSearch(nhsA), e.namedUser(fmt.Sprintf("user-%02d", i), fmt.Sprintf("User %02d", i), "B0107"), "")
		}
		r = e.do(http.MethodGet, "AuditEvent?patient:identifier="+nhsA, e.nurse(), "")
		events := r.entries("match")
		require.Len(t, events, 25)
		assert.Equal(t, "User 29", jget(t, events[0], "agent", 0, "name"))
		assert.Equal(t, 25, r.total())

		// The owning LA sees it; another LA sees nothing about this child.
		r = e.do(http.MethodGet, "AuditEvent?patient:identifier="+nhsA, e.laToken(la1), "")
		assert.Len(t, r.entries("match"), 25)
		r = e.do(http.MethodGet, "AuditEvent?patient:identifier="+nhsA, e.laToken(la2), "")
		assert.Empty(t, r.entries("match"))
		// A scheduled-care user may see the history silently.
		r = e.do(http.MethodGet, "AuditEvent?patient:identifier="+nhsA+"&silent=true", e.gp(), "")
		assert.Equal(t, http.StatusOK, r.Code)
	})
}

func TestConcurrentReadsAreEachAuditedOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
		const users, each = 12, 5
		tokens := make([]string, users)
		for i := range tokens {
			tokens[i] = e.namedUser(fmt.Sprintf("u%02d", i), fmt.Sprintf("User %d", i), "B0107")
		}
		var wg sync.WaitGroup
		for i := 0; i < users; i++ {
			for j := 0; j < each; j++ {
				wg.Add(1)
				go func(tok string) {
					defer wg.Done()
					r := e.do(http.MethodGet, flagSearch(nhsA), tok, "")
					assert.Equal(t, http.StatusOK, r.Code)
				}(tokens[i])
			}
		}
		wg.Wait()
		recs := e.auditOf(nhsA)
		assert.Len(t, recs, users*each, "no lost events")
		ids := map[string]bool{}
		perUser := map[string]int{}
		for _, r := range recs {
			assert.False(t, ids[r.ID], "no duplicated events")
			ids[r.ID] = true
			perUser[r.Agent]++
		}
		for _, n := range perUser {
			assert.Equal(t, each, n)
		}
	})
}

func TestLocalAuthorityFeedWhileEventsArrive(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
		e.putPlan(planSpec{id: "b1", nhs: nhsB, la: la1})
		e.putPlan(planSpec{id: "c1", nhs: nhsC, la: la2})
		nurse := e.nurse()
		// Some accesses before the LA starts reading.
		for i := 0; i < 100; i++ {
			e.do(http.MethodGet, flagSearch(nhsA), nurse, "")
		}
		la := e.laToken(la1)
		stop := make(chan struct{})
		var writers sync.WaitGroup
		for w := 0; w < 3; w++ {
			writers.Add(1)
			go func(w int) {
				defer writers.Done()
				nhs := []string{nhsA, nhsB, nhsC}[w]
				for i := 0; i < 80; i++ {
					select {
					case <-stop:
						return
					default:
					}
					e.do(http.MethodGet, flagSearch(nhs), nurse, "")
				}
			}(w)
		}
		seen := map[string]int{}
		next := "AuditEvent?date=ge2026-01-01&_count=17"
		done := false
		for rounds := 0; rounds < 10000; rounds++ {
			r := e.do(http.MethodGet, next, la, "")
			require.Equal(t, http.StatusOK, r.Code, r.Body.String())
			page := r.entries("match")
			for _, ev := range page {
				seen[jpath[string](t, ev, "id")]++
				for _, en := range jpath[[]any](t, ev, "entity") {
					what, _ := jpath[map[string]any](t, en)["what"].(map[string]any)
					if id, ok := what["identifier"].(map[string]any); ok {
						assert.NotEqual(t, nhsC, id["value"], "only the LA's own children")
					}
				}
			}
			if l := r.link("next"); l != "" {
				next = l
			}
			if len(page) == 0 {
				if done {
					break
				}
				writers.Wait()
				done = true
			}
		}
		close(stop)
		want := 100 + 80 + 80
		assert.Len(t, seen, want, "every access to the LA's children seen")
		for id, n := range seen {
			assert.Equal(t, 1, n, "event %s seen more than once", id)
		}
	})
}

// refuseAudit makes the real SQLite store in dir refuse access records (a
// trigger) until the returned function is called.
func refuseAudit(t *testing.T, dir string) (restore func()) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, sqlite.FileName)+"?_pragma=busy_timeout(5000)")
	require.NoError(t, err)
	_, err = db.Exec(`CREATE TRIGGER refuse_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'audit refused for the test'); END`)
	require.NoError(t, err)
	return func() {
		_, err := db.Exec(`DROP TRIGGER refuse_audit`)
		require.NoError(t, err)
		require.NoError(t, db.Close())
	}
}

// patientReads derives, from the routes the engine serves, every read of a
// type about patients (GET, and POST …/_search), as a request for one
// stored plan (id a1, version 1) or one patient (nhsA). A read route added
// later is in this list without anyone adding it.
func patientReads(t *testing.T, eng *gin.Engine) []struct{ method, path, form string } {
	t.Helper()
	var out []struct{ method, path, form string }
	for _, rt := range eng.Routes() {
		rest, ok := strings.CutPrefix(rt.Path, "/FHIR/R4/")
		if !ok {
			continue
		}
		typ, _, _ := strings.Cut(rest, "/")
		search := rt.Method == http.MethodPost && strings.HasSuffix(rt.Path, "/_search")
		if !registry.AboutPatients(typ) || (rt.Method != http.MethodGet && rt.Method != http.MethodHead && !search) {
			continue
		}
		if rest == typ+"/_history" {
			// A type's history is for local authorities only (403 for
			// health users): TestHazard_TypeHistoryUnauditedWhenAuditRefused.
			continue
		}
		path := strings.NewReplacer(":id", "a1", ":vid", "1").Replace(rest)
		query := "patient:identifier=https://fhir.nhs.uk/Id/nhs-number|" + nhsA
		switch {
		case search:
			out = append(out, struct{ method, path, form string }{rt.Method, path, query})
		case !strings.Contains(rt.Path, ":id"):
			out = append(out, struct{ method, path, form string }{rt.Method, path + "?" + query, ""})
		default:
			out = append(out, struct{ method, path, form string }{rt.Method, path, ""})
		}
	}
	return out
}

// TestAuditFailureFailsClosed makes the database refuse access records (a
// trigger on the real SQLite store) and checks that every read route of a
// type about patients, as the engine lists them, is refused with 503 and
// no data; that silent reads, which need no audit, still work; and that
// each route serves and audits once the audit can be written again.
func TestAuditFailureFailsClosed(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, backend{name: "sqlite", open: func(t testing.TB) store.Store { return openSQLite(t, dir) }})
	e.putPlan(planSpec{id: "a1", nhs: nhsA, la: la1})
	eng := e.engine()
	reads := patientReads(t, eng)
	require.GreaterOrEqual(t, len(reads), 26, "Flag, CareTeam and EpisodeOfCare read, vread, history and search (GET, HEAD and POST), AuditEvent search (GET, HEAD and POST): %v", reads)

	send := func(method, path, form, token string) resp {
		if form != "" {
			return e.doForm(path, token, form)
		}
		return e.do(method, path, token, "")
	}
	restore := refuseAudit(t, dir)
	for _, rd := range reads {
		t.Run("refused-"+rd.method+"-"+rd.path, func(t *testing.T) {
			r := send(rd.method, rd.path, rd.form, e.nurse())
			require.Equal(t, http.StatusServiceUnavailable, r.Code, r.Body.String())
			if rd.method == http.MethodHead {
				assert.Empty(t, r.Body.String(), "a HEAD answer has no body")
				return
			}
			assert.Equal(t, "SERVICE_UNAVAILABLE", r.code())
			assert.NotContains(t, r.Body.String(), nhsA, "no data in the refusal")
			assert.NotContains(t, r.Body.String(), "Flag\",\"id")
		})
	}
	// Silent reads do not need the audit, and still work.
	r := e.do(http.MethodGet, flagSearch(nhsA)+"&silent=true", e.gp(), "")
	assert.Equal(t, http.StatusOK, r.Code)
	assert.Empty(t, e.auditOf(nhsA), "nothing was audited while the audit was refused")

	restore()
	for i, rd := range reads {
		t.Run("served-"+rd.method+"-"+rd.path, func(t *testing.T) {
			r := send(rd.method, rd.path, rd.form, e.nurse())
			require.Equal(t, http.StatusOK, r.Code, "recovers once the audit can be written: %s", r.Body.String())
			assert.Equal(t, i+1, len(e.auditOf(nhsA)), "each served read is audited once")
		})
	}
}
