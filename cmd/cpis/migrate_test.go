package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/store/mongo/mongotest"
)

var children = []string{"9449306702", "9449306710", "9449306729", "9449306737"}

func planFor(id, nhs, extra string) string {
	return fmt.Sprintf(`{"resourceType":"EpisodeOfCare","id":%q,"status":"active",
 "type":[{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/plan-type","code":"CPP"}]}],
 "patient":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":%q}},
 "managingOrganization":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"LA001"}},
 "period":{"start":"2026-01-10"%s}}`, id, nhs, extra)
}

// get fetches url and returns its status and its body made comparable
// across servers: the Bundle's timestamp (the time of the answer) and the
// paging cursors (sealed with a fresh nonce each time) are blanked, and the
// page the first next link leads to is returned with it.
func get(t *testing.T, url, token string, silent bool) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	if silent {
		req.Header.Set("IsUnscheduledAccessEvent", "false")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m), "%s", b)
	next := ""
	if m["resourceType"] == "Bundle" {
		delete(m, "timestamp")
		links, _ := m["link"].([]any)
		for _, l := range links {
			l := l.(map[string]any)
			if l["relation"] == "next" {
				// Links name the configured base URL; follow them on this server.
				next = strings.Replace(l["url"].(string), "http://localhost:8080/FHIR/R4", url[:strings.Index(url, "/FHIR/R4")+len("/FHIR/R4")], 1)
			}
			l["url"] = cursorRE.ReplaceAllString(l["url"].(string), "_cursor=SEALED")
		}
	}
	norm, err := json.Marshal(m)
	require.NoError(t, err)
	h := resp.Header
	return resp.StatusCode, fmt.Sprintf("ETag %s Last-Modified %s\n%s", h.Get("ETag"), h.Get("Last-Modified"), norm), next
}

var cursorRE = regexp.MustCompile(`_cursor=[^&]+`)

// TestHazard_MigratedStoreAnswersDifferently seeds the embedded store
// through the real server (plans, updates, a deletion, audited reads),
// exports it, imports it into MongoDB (FerretDB) with the data directory's
// keys carried over, and asks both servers every read, search, history,
// access history and feed page: the answers are the same, and a feed link
// handed out before the move continues on the new store.
func TestHazard_MigratedStoreAnswersDifferently(t *testing.T) {
	dirA := t.TempDir()
	varsA := map[string]string{"CPIS_DATA_DIR": dirA}
	sA := start(t, varsA)
	baseA := "http://" + sA.addr + "/FHIR/R4"
	la := mint(t, varsA, "--kind", "system", "--org", "LA001")
	nurse := mint(t, varsA, "--kind", "user", "--activity", "B0107")
	nurse2 := mint(t, varsA, "--kind", "user", "--activity", "B0107", "--name", "Dr Sam Patel")
	silent := mint(t, varsA, "--kind", "user", "--activity", "B0170")

	code, body := call(t, "PUT", baseA+"/Organization/la001", la, orgBody)
	require.Equal(t, 201, code, body)
	for i, nhs := range children {
		code, body = call(t, "PUT", fmt.Sprintf("%s/EpisodeOfCare/plan%d", baseA, i), la, planFor(fmt.Sprintf("plan%d", i), nhs, ""))
		require.Equal(t, 201, code, body)
	}
	code, body = call(t, "PUT", baseA+"/EpisodeOfCare/plan1", la, planFor("plan1", children[1], `,"end":"2026-02-01"`))
	require.Equal(t, 200, code, body)
	code, body = call(t, "DELETE", baseA+"/EpisodeOfCare/plan2", la, "")
	require.True(t, code == 200 || code == 204, "%d %v", code, body)
	for _, tok := range []string{nurse, nurse2, nurse} {
		for _, nhs := range children {
			code, body = call(t, "GET", baseA+"/Flag?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|"+nhs, tok, "")
			require.Equal(t, 200, code, body)
		}
	}
	code, body = call(t, "GET", baseA+"/Flag/plan0", nurse, "")
	require.Equal(t, 200, code, body)

	// The LA takes the first page of its feed before the move.
	feed := baseA + "/AuditEvent?date=ge2020-01-01&_count=3"
	code, page1, oldNext := get(t, feed, la, false)
	require.Equal(t, 200, code, page1)
	require.NotEmpty(t, oldNext, "the feed has a second page")
	sA.stop(t)

	// Export, then import into MongoDB with the data directory's keys.
	dump := filepath.Join(t.TempDir(), "dump")
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"export", "--out", dump}, env(varsA), &out))
	assert.Contains(t, out.String(), "exported")
	f, err := mongotest.Start(t.TempDir(), "127.0.0.1:0")
	require.NoError(t, err)
	defer f.Stop()
	dirB := t.TempDir()
	for _, k := range []string{"cursor.key", "log-hash.key", "local-signing-key.pem"} {
		b, err := os.ReadFile(filepath.Join(dirA, k))
		require.NoError(t, err, k)
		require.NoError(t, os.WriteFile(filepath.Join(dirB, k), b, 0o600))
	}
	varsB := map[string]string{"CPIS_DATA_DIR": dirB, "CPIS_MONGODB_URI": f.URI, "CPIS_MONGODB_DATABASE": mongotest.FreshDB()}
	out.Reset()
	require.NoError(t, run(context.Background(), []string{"import", "--in", dump}, env(varsB), &out))
	assert.Contains(t, out.String(), "imported and verified")

	// A second import is refused: the store is no longer empty.
	err = run(context.Background(), []string{"import", "--in", dump}, env(varsB), io.Discard)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "already holds records")

	oldA := sA.addr
	sA = start(t, varsA)
	sB := start(t, varsB)
	oldNext = strings.Replace(oldNext, oldA, sA.addr, 1)
	baseA, baseB := "http://"+sA.addr+"/FHIR/R4", "http://"+sB.addr+"/FHIR/R4"

	same := func(path, token string, silent bool) {
		t.Helper()
		ca, a, nextA := get(t, baseA+path, token, silent)
		cb, b, nextB := get(t, baseB+path, token, silent)
		assert.Equal(t, ca, cb, "status of %s", path)
		if ca != 200 && ca != 404 && ca != 410 {
			t.Errorf("%s answered %d: %s", path, ca, a)
		}
		assert.Equal(t, a, b, "answer to %s", path)
		if nextA != "" && assert.NotEmpty(t, nextB, "next link of %s", path) {
			_, a, _ = get(t, nextA, token, silent)
			_, b, _ = get(t, nextB, token, silent)
			assert.Equal(t, a, b, "second page of %s", path)
		}
	}
	// The feed link handed out before the move: the same page on both.
	_, a, _ := get(t, oldNext, la, false)
	_, b, _ := get(t, strings.Replace(oldNext, sA.addr, sB.addr, 1), la, false)
	assert.Equal(t, a, b, "a feed link from before the move")
	assert.Contains(t, a, "AuditEvent")
	// The feed and access history first: the reads below add to them.
	same("/AuditEvent?date=ge2020-01-01&_count=3", la, false)
	same("/AuditEvent?date=ge2020-01-01", la, false)
	for _, nhs := range children {
		same("/AuditEvent?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|"+nhs, nurse, false)
		same("/AuditEvent?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|"+nhs, la, false)
	}
	for i, nhs := range children {
		id := fmt.Sprintf("plan%d", i)
		for _, typ := range []string{"Flag", "EpisodeOfCare"} {
			same("/"+typ+"/"+id, la, false)
			same("/"+typ+"/"+id+"/_history", la, false)
			same("/"+typ+"/"+id+"/_history/1", la, false)
			same("/"+typ+"/"+id+"/_history/2", la, false)
			same("/"+typ+"?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|"+nhs, silent, true)
		}
	}
	same("/EpisodeOfCare?_count=2", la, false)
	same("/Organization/la001", la, false)
	same("/Organization/la001/_history", la, false)
	same("/Flag?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|"+children[0]+"&_include=Flag:author", silent, true)

	// A new audited read on the new store reaches the LA through the old
	// link's continuation, once.
	code, body = call(t, "GET", baseB+"/Flag?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|"+children[3], nurse2, "")
	require.Equal(t, 200, code, body)
	_, all, _ := get(t, baseB+"/AuditEvent?date=ge2020-01-01&_count=100", la, false)
	_, before, _ := get(t, baseA+"/AuditEvent?date=ge2020-01-01&_count=100", la, false)
	assert.NotEqual(t, before, all, "the new access is in the feed")
}

// TestImportRefusesACorruptedDump: a dump whose file does not match its
// manifest is refused before anything is loaded.
func TestImportRefusesACorruptedDump(t *testing.T) {
	dirA := t.TempDir()
	varsA := map[string]string{"CPIS_DATA_DIR": dirA}
	sA := start(t, varsA)
	la := mint(t, varsA, "--kind", "system", "--org", "LA001")
	code, body := call(t, "PUT", "http://"+sA.addr+"/FHIR/R4/Organization/la001", la, orgBody)
	require.Equal(t, 201, code, body)
	code, body = call(t, "PUT", "http://"+sA.addr+"/FHIR/R4/EpisodeOfCare/plan0", la, planFor("plan0", children[0], ""))
	require.Equal(t, 201, code, body)
	// Export runs beside the running server (a snapshot of the store).
	dump := filepath.Join(t.TempDir(), "dump")
	require.NoError(t, run(context.Background(), []string{"export", "--out", dump, "--gzip=false"}, env(varsA), io.Discard))
	code, body = call(t, "GET", "http://"+sA.addr+"/FHIR/R4/EpisodeOfCare/plan0", la, "")
	require.Equal(t, 200, code, "the server still answers: %v", body)
	sA.stop(t)

	path := filepath.Join(dump, "resources.ndjson")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, bytes.Replace(b, []byte(children[0]), []byte(children[1]), 1), 0o600))

	dirB := t.TempDir()
	err = run(context.Background(), []string{"import", "--in", dump}, env(map[string]string{"CPIS_DATA_DIR": dirB}), io.Discard)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "verification failed")
	_, statErr := os.Stat(filepath.Join(dirB, "cpis.db"))
	assert.True(t, os.IsNotExist(statErr), "nothing was created, let alone loaded")

	// migrate checks its target too: into the (non-empty) source's twin.
	var out bytes.Buffer
	dirC := t.TempDir()
	require.NoError(t, run(context.Background(), []string{"migrate", "--from", "sqlite:" + dirA, "--to", "sqlite:" + dirC}, env(map[string]string{"CPIS_DATA_DIR": dirA}), &out))
	assert.Contains(t, out.String(), "migrated and verified")
	err = run(context.Background(), []string{"migrate", "--from", "sqlite:" + dirA, "--to", "sqlite:" + dirC}, env(map[string]string{"CPIS_DATA_DIR": dirA}), io.Discard)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "already holds records")
}
