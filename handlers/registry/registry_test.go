package registry_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/auth"
	"cpis/fhir"
	"cpis/handlers/registry"
	"cpis/store"
	"cpis/store/sqlite"
)

const nhsA = "9449306753"

// fixture is a registry over a real SQLite store in a temp dir.
type fixture struct {
	reg   *registry.Registry
	st    store.Store
	dir   string
	codec *fhir.Codec
	logs  *bytes.Buffer
}

// newFixture opens the fixture; wrap, if given, stands between the
// registry and the store (a fault or an ordering the test needs).
func newFixture(t testing.TB, wrap ...func(store.Store) store.Store) *fixture {
	t.Helper()
	dir := t.TempDir()
	lite, err := sqlite.Open(dir, sqlite.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { lite.Close() })
	var st store.Store = lite
	for _, w := range wrap {
		st = w(st)
	}
	london, err := time.LoadLocation("Europe/London")
	require.NoError(t, err)
	codec, err := fhir.NewCodec()
	require.NoError(t, err)
	logs := &bytes.Buffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	reg, err := registry.New(registry.Config{Store: st, Location: london, RetentionDays: 365, Log: log, SecurityLog: log,
		SubjectKey: []byte("registry-test-key-16"), Now: func() time.Time { return time.Date(2026, 6, 15, 10, 0, 0, 0, time.UTC) }})
	require.NoError(t, err)
	return &fixture{reg: reg, st: st, dir: dir, codec: codec, logs: logs}
}

func la(ods string) registry.Caller {
	p := auth.NewPrincipal(auth.Principal{Kind: auth.System, Subject: "client-" + ods, OrgCode: ods}, []auth.Permission{
		{Type: "EpisodeOfCare", Access: auth.Write}, {Type: "EpisodeOfCare", Access: auth.Read}, {Type: "Flag", Access: auth.Read},
	})
	return registry.Caller{P: p, RequestID: "test"}
}

func nurse() registry.Caller {
	p := auth.NewPrincipal(auth.Principal{Kind: auth.User, UserID: "u1", Name: "A Nurse", OrgCode: "RBA"}, []auth.Permission{
		{Type: "Flag", Access: auth.Read}, {Type: "EpisodeOfCare", Access: auth.Read},
	})
	return registry.Caller{P: p, RequestID: "test"}
}

func (f *fixture) plan(t *testing.T, id, ods string) *registry.Incoming {
	t.Helper()
	body := fmt.Sprintf(`{"resourceType":"EpisodeOfCare","id":%q,"status":"active",
	 "type":[{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/plan-type","code":"CPP"}]}],
	 "patient":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":%q}},
	 "managingOrganization":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":%q}},
	 "period":{"start":"2026-01-10"}}`, id, nhsA, ods)
	res, issues := f.codec.Decode([]byte(body))
	require.NotNil(t, res)
	require.Empty(t, issues)
	return f.reg.NewIncoming(res)
}

// TestHazard_RegistryReadShowsAChildUnaudited: the registry's reads return
// no record while the audit cannot be written, and exactly one AuditEvent
// is durable before a record is returned.
func TestHazard_RegistryReadShowsAChildUnaudited(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, err := f.reg.Apply(ctx, la("LA001"), []registry.Change{{Op: registry.Put, Type: "EpisodeOfCare", ID: "a1", In: f.plan(t, "a1", "LA001")}}, registry.Single)
	require.NoError(t, err)

	db, err := sql.Open("sqlite", "file:"+filepath.Join(f.dir, sqlite.FileName)+"?_pragma=busy_timeout(5000)")
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Exec(`CREATE TRIGGER refuse_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'refused'); END`)
	require.NoError(t, err)

	rec, err := f.reg.Read(ctx, nurse(), "Flag", "a1")
	require.Error(t, err)
	assert.Nil(t, rec.Body, "no body while the audit fails")
	assert.Equal(t, fhir.KindUnavailable, fhir.As(err).Kind)
	page, err := f.reg.Search(ctx, nurse(), registry.Search{Type: "Flag", Subject: nhsA, Limit: 10, Query: "Flag?test"})
	require.Error(t, err)
	assert.Empty(t, page.Matches)

	_, err = db.Exec(`DROP TRIGGER refuse_audit`)
	require.NoError(t, err)
	rec, err = f.reg.Read(ctx, nurse(), "Flag", "a1")
	require.NoError(t, err)
	assert.Contains(t, string(rec.Body), nhsA)
	recs, err := f.st.AuditBySubject(ctx, nhsA, time.Time{}, 10)
	require.NoError(t, err)
	assert.Len(t, recs, 1, "the one served read was audited")

	silent := nurse()
	silent.Silent = true
	_, err = f.reg.Read(ctx, silent, "Flag", "a1")
	require.Error(t, err, "a read by id is never silent")
	assert.Equal(t, fhir.KindForbidden, fhir.As(err).Kind)
}

// TestApplyBatchEntriesStandAlone: in a batch each change is applied on its
// own: one the caller may not make fails alone, with its own error at its
// own entry, and the others are written.
func TestApplyBatchEntriesStandAlone(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	changes := []registry.Change{
		{Op: registry.Put, Type: "EpisodeOfCare", ID: "b1", In: f.plan(t, "b1", "LA001"), At: "Bundle.entry[0]"},
		{Op: registry.Put, Type: "EpisodeOfCare", ID: "b2", In: f.plan(t, "b2", "LA002"), At: "Bundle.entry[1]"},
		{Op: registry.Delete, Type: "EpisodeOfCare", ID: "missing", At: "Bundle.entry[2]"},
		{Op: registry.Put, Type: "EpisodeOfCare", ID: "b3", In: f.plan(t, "b3", "LA001"), At: "Bundle.entry[3]"},
	}
	results, err := f.reg.Apply(ctx, la("LA001"), changes, registry.Batch)
	require.NoError(t, err)
	require.Len(t, results, 4)
	assert.NoError(t, results[0].Err)
	assert.Equal(t, 201, results[0].Status)
	require.Error(t, results[1].Err, "another LA's plan")
	assert.Equal(t, fhir.KindForbidden, fhir.As(results[1].Err).Kind)
	assert.Equal(t, []string{"Bundle.entry[1].resource.managingOrganization.identifier.value"}, fhir.As(results[1].Err).Issues[0].Expression)
	require.Error(t, results[2].Err)
	assert.Equal(t, fhir.KindNotFound, fhir.As(results[2].Err).Kind)
	assert.NoError(t, results[3].Err)

	// The same content again: not written again.
	again, err := f.reg.Apply(ctx, la("LA001"), changes[:1], registry.Single)
	require.NoError(t, err)
	assert.True(t, again[0].Unchanged)
	assert.EqualValues(t, 1, again[0].Rec.Version)

	// A pinned version that no longer holds is 412.
	v := int64(7)
	_, err = f.reg.Apply(ctx, la("LA001"), []registry.Change{{Op: registry.Put, Type: "EpisodeOfCare", ID: "b1", In: f.plan(t, "b1", "LA001"), IfMatch: &v}}, registry.Single)
	require.Error(t, err)
	assert.Equal(t, fhir.KindPreconditionFailed, fhir.As(err).Kind)
}
