package handlers_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/auth"
	"cpis/handlers"
	"cpis/profiles"
	"cpis/store"
)

// exportScopes is an LA token allowed to write its data and to export it.
var exportScopes = []string{"system/EpisodeOfCare.*", "system/Organization.*", "system/Export.read"}

// plain sends a request through the real engine without the R4 check of do:
// manifests and NDJSON files are not FHIR resources (each NDJSON line is
// checked on its own).
func (e *env) plain(method, path, token, body string, headers ...string) resp {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	target := strings.TrimPrefix(path, "http://cpis.test")
	if !strings.HasPrefix(target, "/") {
		target = "/FHIR/R4/" + target
	}
	req := httptest.NewRequest(method, target, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, req)
	return resp{ResponseRecorder: w, t: e.t}
}

// exportToken is an LA system token with its own client id.
func (e *env) exportToken(ods, client string, scopes ...string) string {
	if len(scopes) == 0 {
		scopes = exportScopes
	}
	tok, err := e.key.MintSystem(auth.SystemToken{ClientID: client, OrgCode: ods, OrgName: "Local Authority " + ods, Scopes: scopes},
		auth.LocalIssuer, auth.LocalAudience, time.Now(), time.Hour)
	require.NoError(e.t, err)
	return tok
}

// kickOff starts an export and returns its status URL.
func (e *env) kickOff(tok, query string) string {
	e.t.Helper()
	r := e.do(http.MethodGet, "$export"+query, tok, "", "Prefer", "respond-async", "Accept", "application/fhir+json")
	require.Equal(e.t, http.StatusAccepted, r.Code, r.Body.String())
	loc := r.Header().Get("Content-Location")
	require.True(e.t, strings.HasPrefix(loc, base+"/$export-status/"), "absolute status URL: %q", loc)
	return loc
}

type manifestDoc struct {
	TransactionTime     string `json:"transactionTime"`
	Request             string `json:"request"`
	RequiresAccessToken bool   `json:"requiresAccessToken"`
	Output              []struct {
		Type  string `json:"type"`
		URL   string `json:"url"`
		Count int    `json:"count"`
	} `json:"output"`
	Error []json.RawMessage `json:"error"`
}

// poll polls a status URL until it is no longer 202 and returns the answer.
func (e *env) poll(status, tok string) resp {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := e.plain(http.MethodGet, status, tok, "")
		if r.Code != http.StatusAccepted {
			return r
		}
		assert.NotEmpty(e.t, r.Header().Get("X-Progress"))
		assert.NotEmpty(e.t, r.Header().Get("Retry-After"))
		require.True(e.t, time.Now().Before(deadline), "the export did not finish")
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) manifest(r resp) manifestDoc {
	e.t.Helper()
	require.Equal(e.t, http.StatusOK, r.Code, r.Body.String())
	assert.Equal(e.t, "application/json", r.Header().Get("Content-Type"))
	var m manifestDoc
	require.NoError(e.t, json.Unmarshal(r.Body.Bytes(), &m), r.Body.String())
	return m
}

// download fetches an output file and returns its lines, each checked as
// an R4 resource of the type the manifest names (and against its CP-IS
// profile).
func (e *env) download(u, tok, typ string) []map[string]any {
	e.t.Helper()
	r := e.plain(http.MethodGet, u, tok, "", "Accept", "application/fhir+ndjson")
	require.Equal(e.t, http.StatusOK, r.Code, r.Body.String())
	assert.Equal(e.t, "application/fhir+ndjson", r.Header().Get("Content-Type"))
	cat, err := profiles.Load(e.deps.Location)
	require.NoError(e.t, err)
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(r.Body.Bytes()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		e.requireValidR4(line)
		res, _ := e.codec.Decode(line)
		require.NotNil(e.t, res)
		assert.Empty(e.t, cat.Validate(res), "CP-IS profile: %s", line)
		var m map[string]any
		require.NoError(e.t, json.Unmarshal(line, &m))
		require.Equal(e.t, typ, m["resourceType"])
		out = append(out, m)
	}
	require.NoError(e.t, sc.Err())
	return out
}

// exportRecords are the export AuditEvents in the store (subject "").
func (e *env) exportRecords() []store.AuditRecord {
	e.t.Helper()
	d, ok := e.store.(store.Dumper)
	require.True(e.t, ok)
	var out []store.AuditRecord
	require.NoError(e.t, d.Dump(context.Background(), func(it store.Item) error {
		if it.Audit != nil && it.Audit.Subject == "" {
			out = append(out, *it.Audit)
		}
		return nil
	}))
	return out
}

func jobID(status string) string {
	return status[strings.LastIndex(status, "/")+1:]
}

// seedTwoLAs writes two authorities with plans (one child under both) and
// a nurse's access to that child, so each LA's feed has one AuditEvent.
func seedTwoLAs(e *env) {
	e.putOrg("org-la1", la1, "Local Authority One")
	e.putOrg("org-la2", la2, "Local Authority Two")
	e.putPlan(planSpec{id: "la1-a", nhs: nhsA, la: la1})
	e.putPlan(planSpec{id: "la1-b", nhs: nhsB, la: la1, planType: "LAC"})
	e.putPlan(planSpec{id: "la2-a", nhs: nhsA, la: la2})
	e.putPlan(planSpec{id: "la2-c", nhs: nhsC, la: la2})
	r := e.do(http.MethodGet, flagSearch(nhsA), e.nurse(), "")
	require.Equal(e.t, http.StatusOK, r.Code)
}

// TestExportCycle: kick-off, poll, manifest, download for a local
// authority: only its own plans, Flags, Organization and feed, every line a
// valid R4 resource, and one AuditEvent recording the export that notifies
// nobody.
func TestExportCycle(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		_, ok := e.store.(store.Exporter)
		require.True(t, ok, "the %s store keeps exports", b.name)
		seedTwoLAs(e)
		tok := e.exportToken(la1, "client-"+la1)

		status := e.kickOff(tok, "?_outputFormat=application%2Ffhir%2Bndjson")
		m := e.manifest(e.poll(status, tok))
		assert.Equal(t, "2026-06-15T10:00:00.000Z", m.TransactionTime)
		assert.Equal(t, base+"/$export?_outputFormat=application%2Ffhir%2Bndjson", m.Request)
		assert.True(t, m.RequiresAccessToken)
		assert.Empty(t, m.Error)
		counts := map[string]int{}
		var all []map[string]any
		for _, o := range m.Output {
			require.True(t, strings.HasPrefix(o.URL, base+"/$export-file/"), "absolute file URL: %s", o.URL)
			lines := e.download(o.URL, tok, o.Type)
			assert.Len(t, lines, o.Count, o.Type)
			counts[o.Type] = o.Count
			all = append(all, lines...)
		}
		assert.Equal(t, map[string]int{"EpisodeOfCare": 2, "Flag": 2, "Organization": 1, "AuditEvent": 1}, counts)
		ids := map[string]bool{}
		for _, res := range all {
			ids[res["resourceType"].(string)+"/"+res["id"].(string)] = true
			blob, _ := json.Marshal(res)
			assert.NotContains(t, string(blob), la2, "another authority's data in LA1's export")
			assert.NotContains(t, string(blob), nhsC)
		}
		for _, res := range all {
			if res["resourceType"] == "AuditEvent" {
				assert.Equal(t, "1 plan found", res["outcomeDesc"], "LA1's own view of an access that also showed LA2's plan")
			}
		}
		for _, want := range []string{"EpisodeOfCare/la1-a", "EpisodeOfCare/la1-b", "Flag/la1-a", "Flag/la1-b", "Organization/org-la1"} {
			assert.True(t, ids[want], "%s exported: %v", want, ids)
		}

		// One AuditEvent for the export: the LA and the counts, no patient,
		// notifying nobody.
		recs := e.exportRecords()
		require.Len(t, recs, 1)
		rec := recs[0]
		assert.False(t, rec.Notify)
		assert.Equal(t, []string{la1}, rec.Owners)
		e.requireValidR4(rec.Body)
		body := string(rec.Body)
		assert.Contains(t, body, "Bulk export of 6 resources: EpisodeOfCare 2, Flag 2, Organization 1, AuditEvent 1")
		assert.Contains(t, body, la1)
		assert.Contains(t, body, base64.StdEncoding.EncodeToString([]byte(m.Request)))
		for _, nhs := range []string{nhsA, nhsB, nhsC} {
			assert.NotContains(t, body, nhs)
		}
		// Not in any child's access history, nor in the LA's feed.
		assert.Len(t, e.auditOf(nhsA), 1, "only the nurse's access")
		assert.Empty(t, e.auditOf(nhsB))
		feed := e.do(http.MethodGet, "AuditEvent?date=ge2026-01-01", e.laToken(la1), "")
		require.Equal(t, http.StatusOK, feed.Code, feed.Body.String())
		assert.Equal(t, 1, feed.total())

		// LA2's export holds its own two plans and its view of the access.
		tok2 := e.exportToken(la2, "client-"+la2)
		m2 := e.manifest(e.poll(e.kickOff(tok2, ""), tok2))
		for _, o := range m2.Output {
			for _, res := range e.download(o.URL, tok2, o.Type) {
				blob, _ := json.Marshal(res)
				assert.NotContains(t, string(blob), "la1-", "LA1's plans in LA2's export")
				assert.NotContains(t, string(blob), nhsB)
			}
		}
		assert.Len(t, e.exportRecords(), 2)
	})
}

// TestExportTypeAndSince: _type narrows the files; _since keeps only what
// changed after it; a POST kick-off with a Parameters body does the same.
func TestExportTypeAndSince(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		seedTwoLAs(e)
		e.clock.Add(time.Hour)
		e.putPlan(planSpec{id: "la1-late", nhs: nhsC, la: la1})
		tok := e.exportToken(la1, "client-"+la1)

		m := e.manifest(e.poll(e.kickOff(tok, "?_type=Organization,Flag"), tok))
		var types []string
		for _, o := range m.Output {
			types = append(types, o.Type)
		}
		assert.Equal(t, []string{"Flag", "Organization"}, types)

		since := url.QueryEscape("2026-06-15T10:30:00Z")
		m = e.manifest(e.poll(e.kickOff(tok, "?_type=EpisodeOfCare,AuditEvent&_since="+since), tok))
		require.Len(t, m.Output, 1, "the access before _since is left out: %+v", m.Output)
		lines := e.download(m.Output[0].URL, tok, "EpisodeOfCare")
		require.Len(t, lines, 1)
		assert.Equal(t, "la1-late", lines[0]["id"])

		post := `{"resourceType":"Parameters","parameter":[{"name":"_type","valueString":"EpisodeOfCare"},{"name":"_since","valueInstant":"2026-06-15T10:30:00Z"}]}`
		r := e.do(http.MethodPost, "$export", tok, post, "Prefer", "respond-async")
		require.Equal(t, http.StatusAccepted, r.Code, r.Body.String())
		m = e.manifest(e.poll(r.Header().Get("Content-Location"), tok))
		require.Len(t, m.Output, 1)
		assert.Equal(t, 1, m.Output[0].Count)
		assert.Contains(t, m.Request, "_since=2026-06-15T10%3A30%3A00Z")
	})
}

// TestExportKickOffRefusals: what the kick-off refuses, with an
// OperationOutcome, starting nothing.
func TestExportKickOffRefusals(t *testing.T) {
	e := newEnv(t, backends()[0])
	tok := e.exportToken(la1, "client-"+la1)
	for _, tc := range []struct {
		name, path, code string
		status           int
		headers          []string
	}{
		{"no-prefer-400", "$export", "PRECONDITION_FAILED", 400, nil},
		{"type-unknown-400", "$export?_type=Patient", "INVALID_VALUE", 400, []string{"Prefer", "respond-async"}},
		{"since-bad-400", "$export?_since=yesterday", "INVALID_VALUE", 400, []string{"Prefer", "respond-async"}},
		{"format-csv-400", "$export?_outputFormat=text/csv", "INVALID_VALUE", 400, []string{"Prefer", "respond-async"}},
		{"typefilter-400", "$export?_typeFilter=Flag%3Fstatus%3Dactive", "INVALID_VALUE", 400, []string{"Prefer", "respond-async"}},
		{"patient-level-400", "Patient/$export", "INVALID_VALUE", 400, []string{"Prefer", "respond-async"}},
		{"group-level-400", "Group/g1/$export", "INVALID_VALUE", 400, []string{"Prefer", "respond-async"}},
		{"status-unknown-404", "$export-status/nope", "RESOURCE_NOT_FOUND", 404, nil},
		{"file-unknown-404", "$export-file/nope/Flag.ndjson", "RESOURCE_NOT_FOUND", 404, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(http.MethodGet, tc.path, tok, "", tc.headers...)
			assert.Equal(t, tc.status, r.Code, r.Body.String())
			assert.Equal(t, tc.code, r.code())
		})
	}
	ex := e.store.(store.Exporter)
	ids, err := ex.ExpiredExports(context.Background(), time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC))
	require.NoError(t, err)
	assert.Empty(t, ids, "no refused kick-off started an export")
}

// TestHazard_ExportForCliniciansOrUnscopedLA: an export discloses many
// children at once; health users and LA tokens without the export scope
// are refused, and cannot poll or download either.
func TestHazard_ExportForCliniciansOrUnscopedLA(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		seedTwoLAs(e)
		tok := e.exportToken(la1, "client-"+la1)
		status := e.kickOff(tok, "")
		m := e.manifest(e.poll(status, tok))
		require.NotEmpty(t, m.Output)
		for name, bad := range map[string]string{
			"nurse":       e.nurse(),
			"gp":          e.gp(),
			"LA no scope": e.laToken(la1),
		} {
			for _, u := range []string{"$export", status, m.Output[0].URL} {
				r := e.plain(http.MethodGet, u, bad, "", "Prefer", "respond-async")
				assert.Equal(t, http.StatusForbidden, r.Code, "%s %s: %s", name, u, r.Body.String())
				assert.Equal(t, "ACCESS_DENIED", r.code(), name)
				assert.NotContains(t, r.Body.String(), nhsA)
			}
		}
		assert.Len(t, e.exportRecords(), 1, "only LA1's export")
	})
}

// TestHazard_ExportOfAnotherLAIsNotFound: another authority, or another
// client of the same authority, cannot poll, download or cancel an
// export: 404, as for none at all.
func TestHazard_ExportOfAnotherLAIsNotFound(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		seedTwoLAs(e)
		tok := e.exportToken(la1, "client-"+la1)
		status := e.kickOff(tok, "")
		m := e.manifest(e.poll(status, tok))
		require.NotEmpty(t, m.Output)
		for name, other := range map[string]string{
			"LA2":              e.exportToken(la2, "client-"+la2),
			"LA2 same client":  e.exportToken(la2, "client-"+la1),
			"LA1 other client": e.exportToken(la1, "client-other"),
		} {
			for _, rq := range []struct{ method, u string }{{http.MethodGet, status}, {http.MethodGet, m.Output[0].URL}, {http.MethodDelete, status}} {
				r := e.plain(rq.method, rq.u, other, "")
				assert.Equal(t, http.StatusNotFound, r.Code, "%s %s %s: %s", name, rq.method, rq.u, r.Body.String())
				assert.Equal(t, "RESOURCE_NOT_FOUND", r.code())
				assert.NotContains(t, r.Body.String(), "la1-a")
			}
		}
		// The owner's export is untouched.
		e.manifest(e.plain(http.MethodGet, status, tok, ""))
		e.download(m.Output[0].URL, tok, m.Output[0].Type)
	})
}

// TestExportCancel: DELETE on the status URL answers 202, removes the files
// and the job; the status is 404 afterwards.
func TestExportCancel(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		dir := t.TempDir()
		if b.name == "sqlite" {
			b.open = func(t testing.TB) store.Store { return openSQLite(t, dir) }
		}
		e := newEnv(t, b)
		seedTwoLAs(e)
		tok := e.exportToken(la1, "client-"+la1)
		status := e.kickOff(tok, "")
		m := e.manifest(e.poll(status, tok))
		id := jobID(status)
		ex := e.store.(store.Exporter)
		rc, err := ex.OpenExportFile(context.Background(), id, "Flag.ndjson")
		require.NoError(t, err)
		rc.Close()

		r := e.do(http.MethodDelete, status, tok, "")
		require.Equal(t, http.StatusAccepted, r.Code, r.Body.String())
		assert.Equal(t, http.StatusNotFound, e.plain(http.MethodGet, status, tok, "").Code)
		assert.Equal(t, http.StatusNotFound, e.plain(http.MethodGet, m.Output[0].URL, tok, "").Code)
		_, err = ex.Export(context.Background(), id)
		assert.ErrorIs(t, err, store.ErrNotFound)
		_, err = ex.OpenExportFile(context.Background(), id, "Flag.ndjson")
		assert.ErrorIs(t, err, store.ErrNotFound, "the files are gone")
		if b.name == "sqlite" {
			_, err := os.Stat(filepath.Join(dir, "exports", id))
			assert.True(t, errors.Is(err, os.ErrNotExist), "the job's directory is gone: %v", err)
		}
		assert.Equal(t, http.StatusNotFound, e.plain(http.MethodDelete, status, tok, "").Code, "a second cancel")
	})
}

// TestExportExpiry: after CPIS_EXPORT_EXPIRY the export is gone: its status
// and files are 404, and the next kick-off sweeps expired jobs away.
func TestExportExpiry(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, func(d *handlers.Deps) { d.ExportExpiry = 30 * time.Minute })
		seedTwoLAs(e)
		tok := e.exportToken(la1, "client-"+la1)
		ex := e.store.(store.Exporter)

		first := e.kickOff(tok, "")
		m := e.manifest(e.poll(first, tok))
		second := e.kickOff(tok, "")
		e.manifest(e.poll(second, tok))
		r := e.plain(http.MethodGet, second, tok, "")
		exp, err := http.ParseTime(r.Header().Get("Expires"))
		require.NoError(t, err)
		assert.Equal(t, time.Date(2026, 6, 15, 10, 30, 0, 0, time.UTC), exp)

		e.clock.Add(29 * time.Minute)
		e.manifest(e.plain(http.MethodGet, first, tok, ""))
		e.clock.Add(2 * time.Minute)
		assert.Equal(t, http.StatusNotFound, e.plain(http.MethodGet, m.Output[0].URL, tok, "").Code)
		assert.Equal(t, http.StatusNotFound, e.plain(http.MethodGet, first, tok, "").Code)
		_, err = ex.Export(context.Background(), jobID(first))
		assert.ErrorIs(t, err, store.ErrNotFound, "an expired export polled is removed")

		// The second, never polled again, goes at the next kick-off.
		_, err = ex.Export(context.Background(), jobID(second))
		require.NoError(t, err)
		e.manifest(e.poll(e.kickOff(tok, "?_type=Organization"), tok))
		_, err = ex.Export(context.Background(), jobID(second))
		assert.ErrorIs(t, err, store.ErrNotFound, "swept")
		_, err = ex.OpenExportFile(context.Background(), jobID(second), "Flag.ndjson")
		assert.ErrorIs(t, err, store.ErrNotFound, "its files too")
	})
}

// TestExportOneRunningPerLA: an authority has one running export at a
// time (409), a job whose process died (no heartbeat within the lease) is
// reported failed by the next poll rather than running forever, and then
// no longer blocks a new export.
func TestExportOneRunningPerLA(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		seedTwoLAs(e)
		tok := e.exportToken(la1, "client-"+la1)
		ex := e.store.(store.Exporter)
		now := e.clock.Now()
		// A job another process is running, as that process wrote it.
		busy, err := ex.CreateExport(context.Background(), store.ExportJob{ID: "elsewhere", Owner: la1, Client: "client-" + la1,
			Created: now, Expires: now.Add(time.Hour), Beat: now, State: store.ExportRunning, Progress: "EpisodeOfCare",
			Types: []string{"EpisodeOfCare"}}, now.Add(-time.Minute))
		require.NoError(t, err)
		require.Empty(t, busy)

		r := e.do(http.MethodGet, "$export", tok, "", "Prefer", "respond-async")
		assert.Equal(t, http.StatusConflict, r.Code, r.Body.String())
		status := base + "/$export-status/elsewhere"
		r = e.plain(http.MethodGet, status, tok, "")
		assert.Equal(t, http.StatusAccepted, r.Code, "still running: %s", r.Body.String())
		assert.Equal(t, "EpisodeOfCare", r.Header().Get("X-Progress"))
		// LA2 is not blocked by LA1's export.
		tok2 := e.exportToken(la2, "client-"+la2)
		e.manifest(e.poll(e.kickOff(tok2, ""), tok2))

		// That process dies: no heartbeat for over the lease.
		e.clock.Add(2 * time.Minute)
		r = e.plain(http.MethodGet, status, tok, "")
		require.Equal(t, http.StatusInternalServerError, r.Code, r.Body.String())
		e.requireValidR4(r.Body.Bytes())
		assert.Contains(t, r.Body.String(), "went away")
		r = e.plain(http.MethodGet, status, tok, "")
		assert.Equal(t, http.StatusInternalServerError, r.Code, "stays failed: %s", r.Body.String())
		// Its worker, had it only stalled, cannot bring it back to running.
		err = ex.UpdateExport(context.Background(), store.ExportJob{ID: "elsewhere", Owner: la1, Client: "client-" + la1,
			Created: now, Expires: now.Add(time.Hour), Beat: e.clock.Now(), State: store.ExportRunning})
		assert.ErrorIs(t, err, store.ErrNotFound)
		r = e.plain(http.MethodGet, status, tok, "")
		assert.Equal(t, http.StatusInternalServerError, r.Code, "a late heartbeat does not revive it: %s", r.Body.String())
		e.manifest(e.poll(e.kickOff(tok, ""), tok))
	})
}

// TestHazard_ExportServedUnaudited: if the export's AuditEvent cannot be
// written the export fails (an OperationOutcome), no file is served and
// none is left behind.
func TestHazard_ExportServedUnaudited(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, backend{name: "sqlite", open: func(t testing.TB) store.Store { return openSQLite(t, dir) }})
	seedTwoLAs(e)
	tok := e.exportToken(la1, "client-"+la1)
	restore := refuseAudit(t, dir)
	status := e.kickOff(tok, "")
	r := e.poll(status, tok)
	require.Equal(t, http.StatusInternalServerError, r.Code, r.Body.String())
	e.requireValidR4(r.Body.Bytes())
	assert.Contains(t, r.Body.String(), "could not be recorded")
	assert.NotContains(t, r.Body.String(), "output")
	id := jobID(status)
	entries, err := os.ReadDir(filepath.Join(dir, "exports", id))
	if err == nil {
		assert.Empty(t, entries, "no file left behind")
	}
	for _, name := range []string{"EpisodeOfCare.ndjson", "Flag.ndjson"} {
		assert.Equal(t, http.StatusNotFound, e.plain(http.MethodGet, base+"/$export-file/"+id+"/"+name, tok, "").Code)
	}
	restore()
	assert.Empty(t, e.exportRecords())
	// Once the audit can be written, an export works and is recorded.
	e.manifest(e.poll(e.kickOff(tok, ""), tok))
	assert.Len(t, e.exportRecords(), 1)
}

// TestExportFilesRoundTrip: a file of several chunks (MongoDB keeps 512 KiB
// a chunk) reads back byte for byte on both stores, and a job's names
// cannot reach outside it.
func TestExportFilesRoundTrip(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := b.open(t)
		t.Cleanup(func() { st.Close() })
		ex, ok := st.(store.Exporter)
		require.True(t, ok)
		ctx := context.Background()
		now := time.Now().UTC()
		_, err := ex.CreateExport(ctx, store.ExportJob{ID: "j1", Owner: la1, State: store.ExportRunning, Beat: now, Expires: now.Add(time.Hour)}, now)
		require.NoError(t, err)
		data := bytes.Repeat([]byte(`{"resourceType":"Flag","id":"x"}`+"\n"), 40000) // about 1.3 MB
		n, err := ex.WriteExportFile(ctx, "j1", "Flag.ndjson", bytes.NewReader(data))
		require.NoError(t, err)
		assert.Equal(t, int64(len(data)), n)
		rc, err := ex.OpenExportFile(ctx, "j1", "Flag.ndjson")
		require.NoError(t, err)
		got, err := io.ReadAll(rc)
		require.NoError(t, err)
		rc.Close()
		assert.True(t, bytes.Equal(data, got), "read back byte for byte")
		for _, bad := range []string{"../j1", "..", ".hidden", "a/b", ""} {
			_, err := ex.OpenExportFile(ctx, "j1", bad)
			assert.ErrorIs(t, err, store.ErrNotFound, bad)
		}
		require.NoError(t, ex.DeleteExport(ctx, "j1"))
		_, err = ex.OpenExportFile(ctx, "j1", "Flag.ndjson")
		assert.ErrorIs(t, err, store.ErrNotFound)
	})
}

// TestCapabilityStatementListsExport: $export is listed at system level
// with the Bulk Data IG's OperationDefinition, and its scope is named.
func TestCapabilityStatementListsExport(t *testing.T) {
	e := newEnv(t, backends()[0])
	r := e.do(http.MethodGet, "metadata", "", "")
	require.Equal(t, http.StatusOK, r.Code, r.Body.String())
	found := false
	for _, op := range jpath[[]any](t, r.json(), "rest", 0, "operation") {
		if jpath[string](t, op, "name") == "export" {
			found = true
			assert.Equal(t, "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export", jpath[string](t, op, "definition"))
		}
	}
	assert.True(t, found, "export listed")
	assert.Contains(t, r.Body.String(), "system/Export.read")
}

// TestExportCancelWhileRunning: a DELETE sent right after the kick-off,
// while the export is (most likely) still being written, stops it: when
// the 202 comes back the job and every file are gone, and stay gone.
func TestExportCancelWhileRunning(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		seedTwoLAs(e)
		for i := 0; i < 60; i++ {
			e.putPlan(planSpec{id: fmt.Sprintf("bulk-%03d", i), nhs: nhsB, la: la1, ident: fmt.Sprintf("b%03d", i)})
		}
		tok := e.exportToken(la1, "client-"+la1)
		ex := e.store.(store.Exporter)
		for round := 0; round < 3; round++ {
			status := e.kickOff(tok, "")
			r := e.do(http.MethodDelete, status, tok, "")
			require.Equal(t, http.StatusAccepted, r.Code, r.Body.String())
			id := jobID(status)
			for _, check := range []func() error{
				func() error { _, err := ex.Export(context.Background(), id); return err },
				func() error {
					_, err := ex.OpenExportFile(context.Background(), id, "EpisodeOfCare.ndjson")
					return err
				},
				func() error { _, err := ex.OpenExportFile(context.Background(), id, "Flag.ndjson"); return err },
			} {
				assert.ErrorIs(t, check(), store.ErrNotFound)
			}
			assert.Equal(t, http.StatusNotFound, e.plain(http.MethodGet, status, tok, "").Code)
		}
		// Nothing comes back later from a worker that was still writing.
		time.Sleep(200 * time.Millisecond)
		ids, err := ex.ExpiredExports(context.Background(), time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC))
		require.NoError(t, err)
		assert.Empty(t, ids)
		// And the authority can export again at once.
		e.manifest(e.poll(e.kickOff(tok, ""), tok))
	})
}
