package handlers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/auth"
	"cpis/fhir"
	"cpis/handlers"
	"cpis/store"
	"cpis/store/mongo"
	"cpis/store/mongo/mongotest"
	"cpis/store/sqlite"
)

// testKey is one local signing key for the whole test binary: RSA key
// generation is slow.
var testKey struct {
	once sync.Once
	key  *auth.LocalKey
	dir  string
}

func signingKey(t testing.TB) *auth.LocalKey {
	testKey.once.Do(func() {
		dir, err := os.MkdirTemp("", "cpis-test-key-")
		if err != nil {
			panic(err)
		}
		testKey.dir = dir
		testKey.key, _, err = auth.LoadOrCreateLocalKey(dir)
		if err != nil {
			panic(err)
		}
	})
	return testKey.key
}

// ferret is an embedded FerretDB the MongoDB backend's runs use.
var ferret *mongotest.Server

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cpis-handlers-ferretdb-")
	if err != nil {
		panic(err)
	}
	if ferret, err = mongotest.Start(dir, "127.0.0.1:0"); err != nil {
		panic(err)
	}
	code := m.Run()
	ferret.Stop()
	os.RemoveAll(dir)
	if testKey.dir != "" {
		os.RemoveAll(testKey.dir)
	}
	os.Exit(code)
}

// backend opens a real store for a test.
type backend struct {
	name string
	open func(t testing.TB) store.Store
}

// backends are the stores handler tests run against.
// The MongoDB backend runs on the embedded FerretDB, and on the real MongoDB
// named by CPIS_TEST_MONGODB_URI when it is set.
func backends() []backend {
	b := []backend{
		{name: "sqlite", open: func(t testing.TB) store.Store { return openSQLite(t, t.TempDir()) }},
		{name: "ferretdb", open: func(t testing.TB) store.Store { return openMongo(t, ferret.URI) }},
	}
	if uri := os.Getenv(mongotest.EnvURI); uri != "" {
		b = append(b, backend{name: "mongodb", open: func(t testing.TB) store.Store { return openMongo(t, uri) }})
	}
	return b
}

func openMongo(t testing.TB, uri string) store.Store {
	s, err := mongo.Open(context.Background(), uri, mongotest.FreshDB(), mongo.Options{})
	require.NoError(t, err)
	return s
}

func openSQLite(t testing.TB, dir string) store.Store {
	s, err := sqlite.Open(dir, sqlite.Options{})
	require.NoError(t, err)
	return s
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is one server under test.
type env struct {
	t      testing.TB
	h      http.Handler
	store  store.Store
	key    *auth.LocalKey
	clock  *clock
	logs   *syncBuffer
	codec  *fhir.Codec
	deps   handlers.Deps // as the server was built, for tests that build on it
	tokens map[string]string
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const base = "http://cpis.test/FHIR/R4"

// Test NHS numbers (valid Modulus 11) and ODS codes.
const (
	nhsA = "9449306753"
	nhsB = "9449306761"
	nhsC = "9449306788"
	la1  = "LA001"
	la2  = "LA002"
)

type envOption func(*handlers.Deps)

func newEnv(t testing.TB, b backend, opts ...envOption) *env {
	t.Helper()
	gin.SetMode(gin.ReleaseMode)
	key := signingKey(t)
	codec, err := fhir.NewCodec()
	require.NoError(t, err)
	london, err := time.LoadLocation("Europe/London")
	require.NoError(t, err)
	st := b.open(t)
	t.Cleanup(func() { st.Close() })
	v, err := auth.NewVerifier(auth.Config{Keys: key.Keys(), Issuer: auth.LocalIssuer, Audience: auth.LocalAudience, RBAC: auth.DefaultRBAC()})
	require.NoError(t, err)
	clk := &clock{t: time.Date(2026, 6, 15, 10, 0, 0, 0, time.UTC)}
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d := handlers.Deps{
		Store: st, Codec: codec, Verifier: v, Log: log, SecurityLog: log.With("log", "security"),
		SubjectKey: []byte("test-key-16-bytes-long"), BaseURL: base, Location: london, RetentionDays: 365,
		LocalMode: true, Version: "test", Now: clk.Now,
	}
	for _, o := range opts {
		o(&d)
	}
	h, err := handlers.New(d)
	require.NoError(t, err)
	e := &env{t: t, h: h, store: st, key: key, clock: clk, logs: logs, codec: codec, deps: d, tokens: map[string]string{}}
	t.Cleanup(func() { e.checkLogs() })
	return e
}

// checkLogs fails the test if any log line carries an NHS number.
func (e *env) checkLogs() {
	logs := e.logs.String()
	for _, nhs := range []string{nhsA, nhsB, nhsC} {
		assert.NotContains(e.t, logs, nhs, "an NHS number reached the log")
	}
}

// Tokens.

func (e *env) userToken(activities ...string) string {
	tok, err := e.key.MintUser(auth.UserToken{
		Name: "Dr Jane Smith", UserID: "555021935107", RoleID: "555021936109",
		RoleName: `"Clinical":"Clinical Provision":"Nurse Access Role"`, RoleCode: "S8000:G8000:R8001",
		OrgCode: "RBA", OrgName: "Somerset NHS Foundation Trust", Activities: activities,
	}, auth.LocalIssuer, auth.LocalAudience, time.Now(), time.Hour)
	require.NoError(e.t, err)
	return tok
}

func (e *env) namedUser(userID, name string, activities ...string) string {
	tok, err := e.key.MintUser(auth.UserToken{
		Name: name, UserID: userID, RoleID: "R" + userID, RoleName: "Nurse", RoleCode: "S8000:G8000:R8001",
		OrgCode: "RBA", OrgName: "Somerset NHS Foundation Trust", Activities: activities,
	}, auth.LocalIssuer, auth.LocalAudience, time.Now(), time.Hour)
	require.NoError(e.t, err)
	return tok
}

func (e *env) laToken(ods string, scopes ...string) string {
	if len(scopes) == 0 {
		scopes = []string{"system/EpisodeOfCare.*", "system/Flag.read", "system/Organization.*", "system/AuditEvent.read"}
	}
	tok, err := e.key.MintSystem(auth.SystemToken{ClientID: "client-" + ods, OrgCode: ods, OrgName: "Local Authority " + ods, Scopes: scopes},
		auth.LocalIssuer, auth.LocalAudience, time.Now(), time.Hour)
	require.NoError(e.t, err)
	return tok
}

// nurse may read with notification (B0107); gp may read silently (B0170).
func (e *env) nurse() string { return e.userToken("B0107") }
func (e *env) gp() string    { return e.userToken("B0170") }

// Requests.

type resp struct {
	*httptest.ResponseRecorder
	t testing.TB
}

func (r resp) json() map[string]any {
	var m map[string]any
	require.NoError(r.t, json.Unmarshal(r.Body.Bytes(), &m), "body: %s", r.Body.String())
	return m
}

// code is the details code of the first issue of an OperationOutcome.
func (r resp) code() string {
	m := r.json()
	require.Equal(r.t, "OperationOutcome", m["resourceType"], "body: %s", r.Body.String())
	issues := jpath[[]any](r.t, m, "issue")
	require.NotEmpty(r.t, issues)
	d, _ := jpath[map[string]any](r.t, issues[0])["details"].(map[string]any)
	if d == nil {
		return ""
	}
	return jpath[string](r.t, d, "coding", 0, "code")
}

// issues returns each issue's details code and expression.
func (r resp) issues() []string {
	var out []string
	for _, is := range jpath[[]any](r.t, r.json(), "issue") {
		m := jpath[map[string]any](r.t, is)
		code := ""
		if d, ok := m["details"].(map[string]any); ok {
			code = jpath[string](r.t, d, "coding", 0, "code")
		}
		expr := ""
		if ex, ok := m["expression"].([]any); ok && len(ex) > 0 {
			expr = jpath[string](r.t, ex[0])
		}
		out = append(out, code+"@"+expr)
	}
	return out
}

// entries returns the bundle's entries' resources of one search mode.
func (r resp) entries(mode string) []map[string]any {
	var out []map[string]any
	m := r.json()
	require.Equal(r.t, "Bundle", m["resourceType"], "body: %s", r.Body.String())
	es, _ := m["entry"].([]any)
	for _, e := range es {
		em := jpath[map[string]any](r.t, e)
		if s, ok := em["search"].(map[string]any); mode == "" || ok && s["mode"] == mode {
			if res, ok := em["resource"].(map[string]any); ok {
				out = append(out, res)
			}
		}
	}
	return out
}

func (r resp) total() int {
	return int(jpath[float64](r.t, r.json(), "total"))
}

func (r resp) link(rel string) string {
	for _, l := range jpath[[]any](r.t, r.json(), "link") {
		lm := jpath[map[string]any](r.t, l)
		if lm["relation"] == rel {
			return jpath[string](r.t, lm, "url")
		}
	}
	return ""
}

// do sends a request through the real engine. Every response body must be
// valid FHIR R4 (each Bundle entry too).
func (e *env) do(method, path, token, body string, headers ...string) resp {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	target := path
	switch {
	case strings.HasPrefix(path, base):
		target = strings.TrimPrefix(path, "http://cpis.test")
	case !strings.HasPrefix(path, "/"):
		target = "/FHIR/R4/" + path
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
	r := resp{ResponseRecorder: w, t: e.t}
	if strings.HasPrefix(target, "/FHIR/R4") && w.Body.Len() > 0 {
		e.requireValidR4(w.Body.Bytes())
	}
	return r
}

// requireValidR4 parses a response through google/fhir with validation, and
// each Bundle entry's resource on its own.
func (e *env) requireValidR4(body []byte) {
	e.t.Helper()
	res, issues := e.codec.Decode(body)
	require.NotNil(e.t, res, "response is not a resource: %s", body)
	for _, is := range issues {
		if is.Severity == "" || is.Severity == "error" {
			require.Failf(e.t, "response is not valid FHIR R4", "%s at %v: %s\n%s", is.Diagnostics, is.Expression, is.Kind, body)
		}
	}
	if res.Type != "Bundle" {
		return
	}
	var b struct {
		Entry []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	require.NoError(e.t, json.Unmarshal(body, &b))
	for _, en := range b.Entry {
		if len(en.Resource) > 0 {
			e.requireValidR4(en.Resource)
		}
	}
}

// Fixtures.

func orgJSON(id, ods, name string) string {
	return fmt.Sprintf(`{"resourceType":"Organization","id":%q,
	 "identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":%q}],
	 "name":%q,
	 "contact":[
	  {"purpose":{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/la-contact-purpose","code":"office-hours"}]},"telecom":[{"system":"phone","value":"0300 123 1000"}]},
	  {"purpose":{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/la-contact-purpose","code":"emergency-duty-team"}]},"telecom":[{"system":"phone","value":"0300 123 9999"}]}]}`, id, ods, name)
}

type planSpec struct {
	id, nhs, la, planType, start, end, status, ident string
}

func planJSON(p planSpec) string {
	if p.planType == "" {
		p.planType = "CPP"
	}
	if p.start == "" {
		p.start = "2026-01-10"
	}
	if p.status == "" {
		p.status = "active"
	}
	period := fmt.Sprintf(`{"start":%q}`, p.start)
	if p.end != "" {
		period = fmt.Sprintf(`{"start":%q,"end":%q}`, p.start, p.end)
	}
	id := ""
	if p.id != "" {
		id = fmt.Sprintf(`"id":%q,`, p.id)
	}
	ident := ""
	if p.ident != "" {
		ident = fmt.Sprintf(`"identifier":[{"system":"https://%s.example/plan-id","value":%q}],`, strings.ToLower(p.la), p.ident)
	}
	return fmt.Sprintf(`{"resourceType":"EpisodeOfCare",%s%s"status":%q,
	 "type":[{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/plan-type","code":%q}]}],
	 "patient":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":%q}},
	 "managingOrganization":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":%q}},
	 "period":%s}`, id, ident, p.status, p.planType, p.nhs, p.la, period)
}

// putPlan writes a plan as its LA and requires success.
func (e *env) putPlan(p planSpec) resp {
	e.t.Helper()
	r := e.do(http.MethodPut, "EpisodeOfCare/"+p.id, e.laToken(p.la), planJSON(p))
	require.Contains(e.t, []int{200, 201}, r.Code, "put plan: %s", r.Body.String())
	return r
}

func (e *env) putOrg(id, ods, name string) resp {
	e.t.Helper()
	r := e.do(http.MethodPut, "Organization/"+id, e.laToken(ods), orgJSON(id, ods, name))
	require.Contains(e.t, []int{200, 201}, r.Code, "put org: %s", r.Body.String())
	return r
}

func flagSearch(nhs string) string {
	return "Flag?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|" + nhs
}

// requireTransactions skips a test of successful transaction Bundles on a
// backend without multi-document transactions, saying why; such backends
// refuse transactions, which TestTransactionRefusedWithoutTransactions checks.
func (e *env) requireTransactions(t *testing.T) {
	t.Helper()
	if tx, ok := e.store.(interface{ Transactions() bool }); ok && !tx.Transactions() {
		t.Skip("skipped: this database has no multi-document transactions (FerretDB, or MongoDB without a replica set), so transaction Bundles are refused with 501; TestTransactionRefusedWithoutTransactions checks that")
	}
}

// forEachBackend runs a test against every store backend.
func forEachBackend(t *testing.T, f func(t *testing.T, b backend)) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

// doForm POSTs a form-encoded search.
func (e *env) doForm(path, token, form string) resp {
	e.t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/FHIR/R4/"+path, strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+token)
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, req)
	if w.Body.Len() > 0 {
		e.requireValidR4(w.Body.Bytes())
	}
	return resp{ResponseRecorder: w, t: e.t}
}

// jget walks a decoded JSON value by object keys (string) and array indexes
// (int) and returns what it finds. A value of another shape fails the test
// with the path, instead of panicking as an unchecked type assertion would.
func jget(t testing.TB, v any, path ...any) any {
	t.Helper()
	for i, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				require.FailNowf(t, "unexpected JSON shape", "at %v: want an object, got %T", path[:i], v)
			}
			v = m[k]
		case int:
			a, ok := v.([]any)
			if !ok || k < 0 || k >= len(a) {
				require.FailNowf(t, "unexpected JSON shape", "at %v: want an array with element %d, got %T %v", path[:i], k, v, v)
			}
			v = a[k]
		default:
			require.FailNowf(t, "bad path", "path elements are strings and ints, not %T", p)
		}
	}
	return v
}

// jpath is jget for a value of a known type: a value of another type fails
// the test.
func jpath[T any](t testing.TB, v any, path ...any) T {
	t.Helper()
	v = jget(t, v, path...)
	out, ok := v.(T)
	if !ok {
		require.FailNowf(t, "unexpected JSON shape", "at %v: want %T, got %T %v", path, out, v, v)
	}
	return out
}

// engine rebuilds the env's server as the bare gin engine (without the
// response compression in front of it), over the same store, and sends the
// env's requests to it: for tests that list or add routes.
func (e *env) engine() *gin.Engine {
	e.t.Helper()
	eng, err := handlers.NewEngine(e.deps)
	require.NoError(e.t, err)
	e.h = eng
	return eng
}
