package load

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"cpis/auth"
	"cpis/fhir"
	"cpis/store"
)

// BenchOptions says what the load command measures.
type BenchOptions struct {
	// Target is the base URL (http://host:port) of a running server; ""
	// when the command starts one (BenchEnv.Server).
	Target string
	// BasePath is the path the FHIR API is served at (/FHIR/R4, or
	// /cpis/FHIR/R4 as the national API has it): the path of the server's
	// base URL. "" is /FHIR/R4.
	BasePath string
	// DataDir is the server's data directory: its local key signs the
	// tokens, and its size is the store's.
	DataDir string
	// Children and AuditEvents are the data set's size; Seeded says the
	// data directory holds it already (else the children are uploaded over
	// HTTP, and the access records written through BenchEnv.Open's store).
	Children, LACount, AuditEvents int
	Seeded                         bool
	AsOf                           time.Time
	Concurrency                    int
	Duration, Warmup               time.Duration
	Transactions                   int
	Scenarios                      string // comma-separated names; "" for all
	// Generator is "wrk", "go" or "" (wrk if it is on the PATH, else the
	// in-process Go client).
	Generator        string
	RetentionDays    int
	Issuer, Audience string
	// Gzip makes the load generators ask for gzip-compressed answers
	// (Accept-Encoding: gzip); by default neither does.
	Gzip bool
	// SweepAuditEvents is how many expired access records the sweep
	// scenario loads for the server's sweeper to purge (0: as many as
	// AuditEvents, at least ten per expired plan).
	SweepAuditEvents int
}

// BenchEnv is what the command wires in.
type BenchEnv struct {
	// Server makes the command that runs the server on addr (nil when
	// BenchOptions.Target is set).
	Server func(addr string) *exec.Cmd
	// Ceiling makes the command that serves the bare gin route on addr in
	// a process of its own; nil serves it from this process.
	Ceiling func(addr string) *exec.Cmd
	// Open opens the server's store from this process, for writing access
	// records and for the retention sweep (nil: those are not done).
	Open func(ctx context.Context) (store.Store, error)
}

// ScenarioNames lists the scenarios in the order they run.
func ScenarioNames() []string {
	return []string{"gin-ceiling", "ping", "silent-search", "audited-search", "read-by-id", "access-history", "feed-page", "transaction", "sweep"}
}

// benchRun is one run of the load command.
type benchRun struct {
	o                     BenchOptions
	env                   BenchEnv
	out                   io.Writer
	client                *http.Client
	host, base            string // http://addr and its FHIR base
	ceilingURL            string
	wrk                   string // the wrk executable, "" for the Go client
	tmp                   string // wrk scripts
	pid                   int    // the server's, when bench started it
	ceilingPID            int    // the gin ceiling's, when it runs in a process of its own
	coldStart             time.Duration
	stopServer            func()      // stops the server bench started
	sweeps                chan string // the server's retention sweep log lines
	serverUp              time.Time   // when the server bench started answered /readyz
	la, nurse, gp         string
	laODS, laName         string
	hits, misses, flagIDs []string
	results               []benchResult
	notes                 []string
}

// newClient is the Go load client. Like wrk, it does not ask for gzip
// (Go's transport would, and would decompress every answer) unless
// o.Gzip says so: compressing answers is work the server then does.
func newClient(o BenchOptions) *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConns: 2 * o.Concurrency, MaxIdleConnsPerHost: 2 * o.Concurrency,
		IdleConnTimeout: time.Minute, DisableCompression: !o.Gzip}, Timeout: time.Minute}
}

// Bench runs the load command: it starts the server (or targets one) and
// the bare gin ceiling, seeds what is missing, mints tokens, drives each
// scenario and prints a table with every scenario's throughput as a share
// of the ceiling and of /_ping measured in the same run.
func Bench(ctx context.Context, o BenchOptions, env BenchEnv, out io.Writer) error {
	b := &benchRun{o: o, env: env, out: out}
	b.client = newClient(o)
	var err error
	if b.tmp, err = os.MkdirTemp("", "cpis-bench-wrk-"); err != nil {
		return err
	}
	defer os.RemoveAll(b.tmp)
	switch o.Generator {
	case "go":
	case "wrk", "":
		b.wrk, err = exec.LookPath("wrk")
		if err != nil {
			if o.Generator == "wrk" {
				return fmt.Errorf("bench: wrk is not on the PATH (apt-get install wrk), or use --generator go")
			}
			fmt.Fprintln(out, "wrk is not on the PATH: the load comes from the in-process Go client, which shares the CPU with the server and lowers every figure (apt-get install wrk)")
		}
	default:
		return fmt.Errorf("bench: unknown generator %q", o.Generator)
	}

	if env.Server != nil {
		if b.coldStart, err = b.startServer(ctx, ""); err != nil {
			return err
		}
		defer func() { b.stopServer() }()
	} else {
		b.host = strings.TrimSuffix(o.Target, "/")
		b.base = b.host + b.basePath()
	}
	stopCeiling, err := b.startCeiling(ctx)
	if err != nil {
		return err
	}
	defer stopCeiling()

	key, _, err := auth.LoadOrCreateLocalKey(o.DataDir)
	if err != nil {
		return err
	}
	if err := b.tokens(key); err != nil {
		return err
	}
	data := newDemoData(1, o.Children, o.LACount, o.AsOf, o.RetentionDays)
	if !o.Seeded {
		if err := b.seed(ctx, key, data); err != nil {
			return err
		}
	}
	if err := b.pick(data); err != nil {
		return err
	}
	for _, sc := range b.scenarios() {
		if err := ctx.Err(); err != nil {
			return err
		}
		r, err := sc.run(ctx)
		if err != nil {
			return fmt.Errorf("bench: %s: %w", sc.name, err)
		}
		b.results = append(b.results, r...)
	}
	return b.report()
}

// freeAddr is a free loopback address.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startProcess starts cmd and waits until url answers 200, returning the
// time that took and how to stop it.
func (b *benchRun) startProcess(ctx context.Context, cmd *exec.Cmd, url string) (time.Duration, func(), error) {
	if cmd.Stdout == nil {
		cmd.Stdout = io.Discard // the server logs a line per request: read, written, and thrown away
	}
	cmd.Stderr = io.Discard
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := b.client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(t0), stop, nil
			}
		}
		select {
		case err := <-done:
			done <- err
			stop()
			return 0, nil, fmt.Errorf("bench: %s stopped before it was ready: %v", filepath.Base(cmd.Path), err)
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			stop()
			return 0, nil, fmt.Errorf("bench: %s did not become ready", url)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// basePath is the path the API is served at.
func (b *benchRun) basePath() string {
	if b.o.BasePath == "" {
		return "/FHIR/R4"
	}
	return "/" + strings.Trim(b.o.BasePath, "/")
}

// startServer runs the server on addr (a free loopback port if "") and
// returns its cold start: from starting the process to /readyz answering
// 200. Its log is thrown away but for the retention sweep's lines, which
// go to b.sweeps.
func (b *benchRun) startServer(ctx context.Context, addr string) (time.Duration, error) {
	var err error
	if addr == "" {
		if addr, err = freeAddr(); err != nil {
			return 0, err
		}
	}
	cmd := b.env.Server(addr)
	if b.sweeps == nil {
		b.sweeps = make(chan string, 16)
	}
	cmd.Stdout = &lineWatch{match: []byte(`"msg":"retention sweep`), lines: b.sweeps}
	b.host = "http://" + addr
	b.base = b.host + b.basePath()
	took, stop, err := b.startProcess(ctx, cmd, b.host+"/readyz")
	if err != nil {
		return 0, err
	}
	b.pid, b.stopServer, b.serverUp = cmd.Process.Pid, stop, time.Now()
	return took, nil
}

// lineWatch is a process's output, thrown away but for the lines holding
// match, which it sends to lines (dropping them if nobody reads).
type lineWatch struct {
	match   []byte
	lines   chan string
	partial []byte
}

func (w *lineWatch) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(w.partial) < 64<<10 {
				w.partial = append(w.partial, p...)
			}
			break
		}
		line := p[:i]
		if len(w.partial) > 0 {
			line = append(w.partial, line...)
			w.partial = w.partial[:0]
		}
		if bytes.Contains(line, w.match) {
			select {
			case w.lines <- string(line):
			default:
			}
		}
		p = p[i+1:]
	}
	return n, nil
}

// startCeiling serves the bare gin route: in a process of its own when the
// command can start one, else from this process.
func (b *benchRun) startCeiling(ctx context.Context) (func(), error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	b.ceilingURL = "http://" + addr + CeilingPath
	if b.env.Ceiling != nil {
		cmd := b.env.Ceiling(addr)
		_, stop, err := b.startProcess(ctx, cmd, b.ceilingURL)
		if err == nil {
			b.ceilingPID = cmd.Process.Pid
		}
		return stop, err
	}
	b.notes = append(b.notes, "the gin ceiling was served from the load command's own process")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: CeilingHandler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close() }, nil
}

// tokens mints a local authority's, a nurse's (B0107) and a GP's (B0170).
func (b *benchRun) tokens(key *auth.LocalKey) error {
	now := time.Now()
	iss, aud := b.o.Issuer, b.o.Audience
	var err error
	b.laODS, b.laName = "LA001", "Local Authority 001"
	if b.la, err = key.MintSystem(auth.SystemToken{ClientID: "cpis-bench", OrgCode: b.laODS, OrgName: b.laName,
		Scopes: []string{"system/EpisodeOfCare.*", "system/Flag.read", "system/Organization.*", "system/AuditEvent.read"}}, iss, aud, now, 12*time.Hour); err != nil {
		return err
	}
	user := func(name, id string, activity string) (string, error) {
		return key.MintUser(auth.UserToken{Name: name, UserID: id, RoleID: id + "1", RoleName: "Nurse Access Role", RoleCode: "S8000:G8000:R8001",
			OrgCode: "RBA", OrgName: "Somerset NHS Foundation Trust", Activities: []string{activity}}, iss, aud, now, 12*time.Hour)
	}
	if b.nurse, err = user("Bench Nurse", "555000000001", "B0107"); err != nil {
		return err
	}
	b.gp, err = user("Bench GP", "555000000002", "B0170")
	return err
}

// seed loads the data set with 1,000-entry transaction Bundles over HTTP,
// the upload path, a few at a time, and writes the access records through
// the store.
func (b *benchRun) seed(ctx context.Context, key *auth.LocalKey, d *demoData) error {
	if len(d.plans) == 0 {
		return nil
	}
	tokens := map[string]string{}
	var err error
	for _, la := range d.las {
		if tokens[la.ods], err = key.MintSystem(auth.SystemToken{ClientID: "cpis-bench", OrgCode: la.ods, OrgName: la.name,
			Scopes: []string{"system/EpisodeOfCare.write", "system/Organization.write"}}, b.o.Issuer, b.o.Audience, time.Now(), 12*time.Hour); err != nil {
			return err
		}
	}
	start := time.Now()
	err = postAll(ctx, d, 1000, 4, b.out, "seeding over HTTP", func(ctx context.Context, j job) error {
		status, body, err := b.do(ctx, http.MethodPost, b.base, tokens[j.la.ods], bundleBody(j, "transaction"), "return=minimal")
		if err == nil && status != http.StatusOK {
			err = fmt.Errorf("bench: seeding %s: %d %s", j.la.ods, status, firstDiagnostics(body))
		}
		return err
	})
	if err != nil {
		return err
	}
	took := time.Since(start)
	fmt.Fprintf(b.out, "seeded %d children (%d plans, %d local authorities) through transaction Bundles over HTTP in %s: %.0f resources/s\n",
		b.o.Children, len(d.plans), len(d.las), took.Round(time.Millisecond), float64(d.resources())/took.Seconds())
	if b.o.AuditEvents == 0 || b.env.Open == nil {
		return nil
	}
	st, err := b.env.Open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	res, err := seedAudit(ctx, st, d, SeedOptions{Seed: 1, AsOf: b.o.AsOf, AuditEvents: b.o.AuditEvents, Workers: 4}, b.out)
	if err != nil {
		return err
	}
	fmt.Fprintf(b.out, "access records: %d written through the store in %s, %d there already\n", res.written, res.took.Round(time.Millisecond), res.existing)
	return nil
}

// pick chooses the NHS numbers and Flag ids the scenarios ask about: those
// of served plans (hits) and numbers no plan has (misses, as most lookups in
// an emergency department are). The server must hold the children the
// options describe: one seeded with fewer (a --seeded run or a --target
// with a smaller --children than its seed) would answer most "hits" with
// no plan, and every figure would measure misses. So it fails when fewer
// than half of the first pickCheck children with plans (or of all of them,
// if there are fewer) have a Flag there.
func (b *benchRun) pick(d *demoData) error {
	seen := map[string]bool{}
	for _, p := range d.plans {
		if !p.expiredAtRetention && !seen[p.nhs] {
			seen[p.nhs] = true
			b.hits = append(b.hits, p.nhs)
		}
	}
	miss := nhsNumbers(998000000)
	for i := 0; i < 1000; i++ {
		b.misses = append(b.misses, miss())
	}
	r := rand.New(rand.NewPCG(7, 7))
	r.Shuffle(len(b.hits), func(i, j int) { b.hits[i], b.hits[j] = b.hits[j], b.hits[i] })
	// Flag ids: ask the server for some (the seed's conditional PUTs let it
	// choose them).
	found, failed := 0, 0 // of the hits asked about, those with a Flag there, and those not answered 200
	var lastErr error     // why the last of those failed
	judge := func(asked int) error {
		if 2*found >= asked {
			return nil
		}
		if failed > 0 {
			return fmt.Errorf("bench: of the first %d searches for children with plans, %d were not answered 200 (%v): is the server up, and this its data directory?",
				asked, failed, lastErr)
		}
		return fmt.Errorf("bench: the server holds few of the %d children --children describes: of the first %d with plans, %d have a Flag there; "+
			"give --children and --la-count as the data directory was seeded", b.o.Children, asked, found)
	}
	i := 0
	for ; i < len(b.hits) && len(b.flagIDs) < 2000; i++ {
		if i == pickCheck {
			if err := judge(i); err != nil {
				return err
			}
		}
		status, body, err := b.do(context.Background(), http.MethodGet, b.base+"/Flag?"+nhsQuery(b.hits[i])+"&silent=true", b.gp, nil, "")
		if err != nil || status != http.StatusOK {
			failed++
			lastErr = err
			if err == nil {
				lastErr = fmt.Errorf("status %d", status)
			}
			continue
		}
		var bundle struct {
			Entry []struct {
				Resource struct {
					ID string `json:"id"`
				} `json:"resource"`
			} `json:"entry"`
		}
		if json.Unmarshal(body, &bundle) == nil && len(bundle.Entry) > 0 {
			found++
			for _, e := range bundle.Entry {
				b.flagIDs = append(b.flagIDs, e.Resource.ID)
			}
		}
	}
	if i < pickCheck { // fewer children with plans than that: judged on all of them
		return judge(i)
	}
	return nil
}

// pickCheck is how many children with plans pick asks about before it
// judges whether the server holds the data set.
const pickCheck = 100

// searchPaths are paths asking about children with plans three times in
// four and about children without one the fourth time, as an emergency
// department does.
func (b *benchRun) searchPaths(prefix, suffix string) []string {
	n := max(4000, min(20000, 4*len(b.hits)/3))
	out := make([]string, n)
	for i := range out {
		nhs := ""
		if i%4 == 3 || len(b.hits) == 0 {
			nhs = b.misses[i%len(b.misses)]
		} else {
			nhs = b.hits[(i-i/4)%len(b.hits)]
		}
		out[i] = prefix + nhsQuery(nhs) + suffix
	}
	return out
}

// scenario is one measured kind of request.
type scenario struct {
	name, what string
	token      string
	// paths are the GET requests' paths (with query), cycled through;
	// request makes a request instead, for the Go client only.
	url     string // scheme and host the paths are on
	paths   []string
	request func() (method, url string, body []byte)
	// count runs exactly this many requests one at a time, for a duration.
	count int
	// prepare runs before the load and returns what runs alongside it;
	// what that returns is noted.
	prepare func(ctx context.Context) (during func(ctx context.Context) (string, error), err error)
	// alt, if set, takes turns with this scenario's load while the
	// companion runs, and is reported in a row of its own.
	alt *scenario
	b   *benchRun
}

func (b *benchRun) scenarios() []scenario {
	want := map[string]bool{}
	for _, n := range strings.Split(b.o.Scenarios, ",") {
		if n = strings.TrimSpace(n); n != "" {
			want[n] = true
		}
	}
	fhirPath := strings.TrimPrefix(b.base, b.host)
	ceilingHost, _ := strings.CutSuffix(b.ceilingURL, CeilingPath)
	ids := b.flagIDs
	if len(ids) == 0 {
		ids = []string{"missing"}
	}
	idPaths := make([]string, len(ids))
	for i, id := range ids {
		idPaths[i] = fhirPath + "/Flag/" + id
	}
	feedSince := b.o.AsOf.AddDate(0, 0, -7).Format("2006-01-02")
	// New children for the transaction scenario, from one of a hundred
	// ranges of 10,000 chosen at random: a run on a store an earlier run
	// used (--seeded) would otherwise give the same children another plan
	// each time, and measure an ever longer duplicate check.
	fresh := nhsNumbers(997000000 + rand.IntN(100)*10000)
	var txSeq atomic.Int64
	all := []scenario{
		{name: "gin-ceiling", what: "GET " + CeilingPath + " on a bare gin.New() route answering a fixed 310-byte JSON: the limit of HTTP through this stack here",
			url: ceilingHost, paths: []string{CeilingPath}, token: b.nurse},
		{name: "ping", what: "GET /FHIR/R4/_ping: a fixed answer through the server's middleware (token check included)",
			paths: []string{fhirPath + "/_ping"}, token: b.nurse},
		{name: "silent-search", what: "GET /Flag?patient:identifier=…&silent=true (B0170)",
			paths: b.searchPaths(fhirPath+"/Flag?", "&silent=true"), token: b.gp},
		{name: "audited-search", what: "GET /Flag?patient:identifier=… (B0107): a durable AuditEvent per request",
			paths: b.searchPaths(fhirPath+"/Flag?", ""), token: b.nurse},
		{name: "read-by-id", what: "GET /Flag/{id} (B0107): reads by id are always audited", paths: idPaths, token: b.nurse},
		{name: "access-history", what: "GET /AuditEvent?patient:identifier=… (B0107), itself audited",
			paths: b.searchPaths(fhirPath+"/AuditEvent?", ""), token: b.nurse},
		{name: "feed-page", what: "GET /AuditEvent?date=ge" + feedSince + "&_count=50: one page of " + b.laODS + "'s notification feed, with its total",
			paths: []string{fhirPath + "/AuditEvent?date=ge" + feedSince + "&_count=50"}, token: b.la},
		{name: "transaction", what: "POST / with a 1,000-entry transaction Bundle of new plans, one at a time (Go client)", count: b.o.Transactions, token: b.la,
			request: func() (string, string, []byte) {
				n := txSeq.Add(1)
				return "POST", b.base, txBundle(demoLA{ods: b.laODS, name: b.laName}, 1000, fmt.Sprintf("BENCH-%d-%d", time.Now().Unix(), n), fresh)
			}},
	}
	if b.env.Open != nil && b.env.Server != nil {
		// Audited and silent searches take turns, a duration each, while
		// the server's own sweeper runs.
		all = append(all, scenario{name: "sweep", what: "audited search (as above) while the server's retention sweeper purges expired plans and their access history",
			paths: b.searchPaths(fhirPath+"/Flag?", ""), token: b.nurse, prepare: b.sweep,
			alt: &scenario{name: "sweep-silent", what: "silent search (as above), taking turns with the audited search during the same sweep",
				paths: b.searchPaths(fhirPath+"/Flag?", "&silent=true"), token: b.gp}})
	} else if len(want) == 0 || want["sweep"] {
		b.notes = append(b.notes, "sweep: not measured; it needs the server bench starts (not --target), which it restarts for its sweeper to find the expired records")
	}
	var out []scenario
	for _, sc := range all {
		if len(want) > 0 && !want[sc.name] {
			continue
		}
		sc.b = b
		if sc.url == "" {
			sc.url = b.host
		}
		if sc.alt != nil {
			sc.alt.b, sc.alt.url = b, sc.url
		}
		out = append(out, sc)
	}
	return out
}

// serverFirstSweep is how soon after its start the server sweeps first
// (cmd/cpis's firstSweep).
const serverFirstSweep = 2 * time.Second

// sweep prepares a month's worth of expiry at the data set's scale (a
// thirty-sixth of the children: about a third of plans end each year):
// plans that ended past the retention period, uploaded as LA001's, and
// SweepAuditEvents access records about their children recorded past it
// (by default as many as the data set has). Then it restarts the server,
// as production runs the sweep: the server's own sweeper, in its process
// and through its writer, finds them expired at its first turn (a few
// seconds after the start) and purges them while the load runs. It returns
// the wait for the server to log that sweep.
func (b *benchRun) sweep(ctx context.Context) (func(ctx context.Context) (string, error), error) {
	// The running server's first sweep turn (firstSweep after its start,
	// in cmd/cpis) must be over before the expired plans are uploaded, or
	// it purges some of them itself and the restarted server finds fewer.
	if wait := time.Until(b.serverUp.Add(serverFirstSweep + 2*time.Second)); wait > 0 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	st, err := b.env.Open(ctx)
	if err != nil {
		return nil, err
	}
	plans, records, err := b.expire(ctx, st)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	for len(b.sweeps) > 0 { // earlier sweeps' lines
		<-b.sweeps
	}
	b.stopServer()
	// On the same address: the scenarios' requests are made for it.
	coldStart, err := b.startServer(ctx, strings.TrimPrefix(b.host, "http://"))
	if err != nil {
		return nil, err
	}
	started := time.Now()
	return func(ctx context.Context) (string, error) {
		var line string
		select {
		case line = <-b.sweeps:
		case <-ctx.Done():
			return "", ctx.Err()
		}
		var l struct {
			Msg     string `json:"msg"`
			Error   string `json:"error"`
			Records int    `json:"records_purged"`
			Audit   int    `json:"access_records_purged"`
			Took    int64  `json:"took"` // slog writes a duration in nanoseconds
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			return "", fmt.Errorf("reading the server's sweep log line: %w", err)
		}
		if l.Msg != "retention sweep" {
			return "", fmt.Errorf("the server's retention sweep: %s: %s", l.Msg, l.Error)
		}
		took := time.Duration(l.Took)
		if took == 0 {
			took = time.Since(started)
		}
		return fmt.Sprintf("the server's sweeper purged %d plans (with their Flags) and %d access records in %s, from %d expired plans and %d access records written for it; the server restarted on them in %s (cold start)",
			l.Records, l.Audit, took.Round(time.Millisecond), plans, records, coldStart.Round(time.Millisecond)), nil
	}, nil
}

// expire writes the expired plans (over HTTP, the upload path) and their
// access records (through the store, as the seed does).
func (b *benchRun) expire(ctx context.Context, st store.Store) (plans, records int, err error) {
	plans = max(10, b.o.Children/36)
	records = b.o.SweepAuditEvents
	if records <= 0 {
		records = max(10*plans, b.o.AuditEvents)
	}
	now := time.Now().UTC()
	end := now.AddDate(0, 0, -b.o.RetentionDays-10)
	la := demoLA{ods: b.laODS, name: b.laName}
	nhs := nhsNumbers(996000000)
	run := now.Unix()
	var expired []demoPlan
	for i := 0; i < plans; i++ {
		expired = append(expired, demoPlan{ident: fmt.Sprintf("SWEEP-%d-%06d", run, i), typ: "CPP", nhs: nhs(),
			start: end.AddDate(-1, 0, 0).Format("2006-01-02"), end: end.Format("2006-01-02"), expiredAtRetention: true})
	}
	for i := 0; i < len(expired); i += 1000 {
		j := job{la: la}
		for _, p := range expired[i:min(i+1000, len(expired))] {
			e, err := planEntry(la, p)
			if err != nil {
				return 0, 0, err
			}
			j.entries = append(j.entries, e)
		}
		status, body, err := b.do(ctx, http.MethodPost, b.base, b.la, bundleBody(j, "transaction"), "return=minimal")
		if err == nil && status != http.StatusOK {
			err = fmt.Errorf("uploading expired plans: %d %s", status, firstDiagnostics(body))
		}
		if err != nil {
			return 0, 0, err
		}
	}
	ed := &demoData{las: []demoLA{la}, plans: expired}
	at := now.AddDate(0, 0, -b.o.RetentionDays-5)
	err = writeAudit(ctx, st, 0, records, 4, b.out, "expired access records", func(i int) store.AuditRecord {
		return accessRecord(ed, uint64(run), i, at.Add(time.Duration(i)*time.Millisecond))
	})
	return plans, records, err
}

// bundleJobs cuts the data set into Bundles of at most n entries, each of
// one local authority.
func bundleJobs(d *demoData, n int) ([]job, error) {
	var jobs []job
	for i, la := range d.las {
		org, err := orgEntry(la)
		if err != nil {
			return nil, err
		}
		entries := [][]byte{org}
		for _, p := range d.plans {
			if p.la != i {
				continue
			}
			e, err := planEntry(la, p)
			if err != nil {
				return nil, err
			}
			entries = append(entries, e)
		}
		for len(entries) > 0 {
			k := min(n, len(entries))
			jobs = append(jobs, job{la: la, entries: entries[:k]})
			entries = entries[k:]
		}
	}
	return jobs, nil
}

// txBundle is a transaction Bundle of n new CPP plans of la, each put by
// its plan identifier (prefix-0000 on) for a child with a new NHS number.
func txBundle(la demoLA, n int, prefix string, nhs func() string) []byte {
	j := job{la: la}
	for i := 0; i < n; i++ {
		e, _ := planEntry(la, demoPlan{ident: fmt.Sprintf("%s-%04d", prefix, i), typ: "CPP", nhs: nhs(), start: "2026-01-01"})
		j.entries = append(j.entries, e)
	}
	return bundleBody(j, "transaction")
}

func bundleBody(j job, typ string) []byte {
	var body bytes.Buffer
	body.WriteString(`{"resourceType":"Bundle","type":"` + typ + `","entry":[`)
	for i, e := range j.entries {
		if i > 0 {
			body.WriteByte(',')
		}
		body.Write(e)
	}
	body.WriteString(`]}`)
	return body.Bytes()
}

func nhsQuery(nhs string) string {
	return "patient:identifier=" + fhir.NHSNumberSystem + "%7C" + nhs
}

// peakRSS is the process's peak resident set (VmHWM), in KiB; 0 if unknown.
func peakRSS(pid int) int64 {
	if pid == 0 {
		return 0
	}
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// processCPU is the CPU time (user and system, all threads) the process
// has used, from /proc/PID/stat; ok is false if it cannot be read.
func processCPU(pid int) (time.Duration, bool) {
	if pid == 0 {
		return 0, false
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, false
	}
	// The fields after the command's name, which is in parentheses and
	// may hold spaces: state is field 3, utime 14 and stime 15.
	end := bytes.LastIndex(b, []byte(") "))
	if end < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[end+2:]))
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(utime+stime) * time.Second / userHZ, true
}

// userHZ is the unit of the CPU times in /proc/PID/stat (USER_HZ, 100
// on Linux whatever the kernel's tick).
const userHZ = 100

// benchResult is what one scenario measured.
type benchResult struct {
	name, what     string
	generator      string
	concurrency    int
	requests, errs int
	rate           float64
	p50, p99, max  time.Duration
	rss            int64 // the server's peak resident memory so far, KiB
	// cpu is the CPU time the process answering the scenario used while
	// its load was measured (0: not measured); with requests, the CPU an
	// answer costs, steadier than requests a second on a shared machine.
	cpu     time.Duration
	note    string
	elapsed time.Duration
}

// run drives the scenario: warm-up, then measured load, with the
// scenario's companion (the sweep) alongside, and its alternate's load
// taking turns with its own. It returns the scenario's result, and its
// alternate's if it has one.
func (sc scenario) run(ctx context.Context) ([]benchResult, error) {
	r, alt, err := sc.measure(ctx)
	if err != nil {
		return nil, err
	}
	out := []benchResult{r}
	if alt != nil {
		out = append(out, *alt)
	}
	for _, r := range out {
		fmt.Fprintf(sc.b.out, "%-15s %8.0f req/s  p50 %8s  p99 %8s  errors %d  (%s)\n", r.name, r.rate, r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond), r.errs, r.generator)
		if r.note != "" {
			fmt.Fprintln(sc.b.out, "  "+r.note)
		}
	}
	return out, nil
}

func (sc scenario) measure(ctx context.Context) (benchResult, *benchResult, error) {
	b := sc.b
	var during func(context.Context) (string, error)
	if sc.prepare != nil {
		var err error
		if during, err = sc.prepare(ctx); err != nil {
			return benchResult{}, nil, err
		}
	}
	drive := sc.driver()
	if sc.count == 0 && b.o.Warmup > 0 {
		if _, err := drive(ctx, b.o.Warmup); err != nil {
			return benchResult{}, nil, err
		}
	}
	type noted struct {
		s   string
		err error
	}
	var side chan noted
	if during != nil {
		side = make(chan noted, 1)
		go func() {
			s, err := during(ctx)
			side <- noted{s, err}
		}()
	}
	cpu0, measured := processCPU(sc.pid())
	r, err := drive(ctx, b.o.Duration)
	if err != nil {
		return r, nil, err
	}
	if cpu1, ok := processCPU(sc.pid()); ok && measured && side == nil {
		// With a companion (the sweep) the process's CPU is the
		// companion's too: not the answers' alone.
		r.cpu = cpu1 - cpu0
	}
	if side != nil {
		// The load goes on, a duration at a time, until the companion is
		// done, so a stall it causes is measured rather than cut off.
		// With an alternate, the two take turns, the alternate first.
		runs, idle := 1, 0
		if r.requests == 0 {
			idle++
		}
		var alt *benchResult
		var n noted
		p99s := []time.Duration{r.p99}
	wait:
		for turn := 0; ; turn++ {
			select {
			case n = <-side:
				break wait
			default:
			}
			if sc.alt != nil && turn%2 == 0 {
				more, err := sc.alt.driver()(ctx, b.o.Duration)
				if err != nil {
					return r, nil, err
				}
				if alt == nil {
					alt = &more
				} else {
					*alt = merge(*alt, more)
				}
				continue
			}
			more, err := drive(ctx, b.o.Duration)
			if err != nil {
				return r, nil, err
			}
			runs++
			if more.requests == 0 {
				idle++
			}
			p99s = append(p99s, more.p99)
			r = merge(r, more)
		}
		if n.err != nil {
			return r, nil, n.err
		}
		if alt != nil {
			alt.name, alt.what, alt.rss = sc.alt.name, sc.alt.what, peakRSS(b.pid)
		}
		r.note = n.s + fmt.Sprintf("; the load ran %d×%s meanwhile", runs, b.o.Duration)
		if idle > 0 {
			r.note += fmt.Sprintf(", %d of them with no request answered", idle)
		}
		if runs > 1 {
			sort.Slice(p99s, func(i, j int) bool { return p99s[i] < p99s[j] })
			r.note += fmt.Sprintf(" (p50 and p99 are the worst run's; the runs' p99: best %s, median %s, worst %s)",
				p99s[0].Round(10*time.Microsecond), p99s[len(p99s)/2].Round(10*time.Microsecond), p99s[len(p99s)-1].Round(10*time.Microsecond))
		}
		r.name, r.what, r.rss = sc.name, sc.what, peakRSS(b.pid)
		return r, alt, nil
	}
	r.name, r.what, r.rss = sc.name, sc.what, peakRSS(b.pid)
	return r, nil, nil
}

// pid is the process answering the scenario's requests, 0 if unknown (a
// --target server, or the ceiling served from bench's own process).
func (sc scenario) pid() int {
	if sc.name == "gin-ceiling" {
		return sc.b.ceilingPID
	}
	return sc.b.pid
}

// driver is the scenario's load generator: wrk for GET paths when it is
// there, else the Go client.
func (sc scenario) driver() func(context.Context, time.Duration) (benchResult, error) {
	if sc.b.wrk != "" && sc.paths != nil {
		return sc.driveWrk
	}
	return sc.driveGo
}

// merge adds a further run's measurement to r.
func merge(r, more benchResult) benchResult {
	r.requests += more.requests
	r.errs += more.errs
	r.elapsed += more.elapsed
	if r.elapsed > 0 {
		r.rate = float64(r.requests) / r.elapsed.Seconds()
	}
	r.p50, r.p99, r.max = max(r.p50, more.p50), max(r.p99, more.p99), max(r.max, more.max)
	return r
}

// next returns the scenario's i-th request.
func (sc scenario) next(i int) (method, url string, body []byte) {
	if sc.request != nil {
		return sc.request()
	}
	return http.MethodGet, sc.url + sc.paths[i%len(sc.paths)], nil
}

// driveGo runs the scenario from this process's Go client: its clients
// for d, or count requests one at a time.
func (sc scenario) driveGo(ctx context.Context, d time.Duration) (benchResult, error) {
	b := sc.b
	clients := b.o.Concurrency
	if sc.count > 0 {
		clients = 1
	}
	var mu sync.Mutex
	var all []time.Duration
	errs := 0
	var left, seq atomic.Int64
	left.Store(int64(sc.count))
	seq.Store(rand.Int64N(1 << 20))
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			bad := 0
			for ctx.Err() == nil {
				if sc.count > 0 {
					if left.Add(-1) < 0 {
						break
					}
				} else if time.Now().After(deadline) {
					break
				}
				method, url, body := sc.next(int(seq.Add(1)))
				t0 := time.Now()
				status, _, err := b.do(ctx, method, url, sc.token, body, "return=minimal")
				took := time.Since(t0)
				if err != nil || status != http.StatusOK {
					bad++
					continue
				}
				lat = append(lat, took)
			}
			mu.Lock()
			all = append(all, lat...)
			errs += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	r := benchResult{generator: "Go client", concurrency: clients, requests: len(all) + errs, errs: errs, elapsed: elapsed}
	if len(all) > 0 {
		r.rate = float64(len(all)+errs) / elapsed.Seconds()
		r.p50, r.p99, r.max = all[len(all)/2], all[min(len(all)-1, len(all)*99/100)], all[len(all)-1]
	}
	return r, nil
}

// wrkScript cycles each wrk thread through the paths file from its own
// starting point, sends the token, and prints a line the command parses.
const wrkScript = `local paths = {}
for line in io.lines(%q) do paths[#paths + 1] = line end
wrk.headers["Authorization"] = %q
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("offset", threads * 7919)
end
local i = 0
function init(args)
  i = offset or 0
end
function request()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("CPIS-WRK %%d %%d %%d %%d %%d %%d %%d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max, e.status, e.connect + e.read + e.write + e.timeout))
end
`

// driveWrk runs the scenario from wrk, a separate process light enough
// not to be the bottleneck.
func (sc scenario) driveWrk(ctx context.Context, d time.Duration) (benchResult, error) {
	b := sc.b
	paths := filepath.Join(b.tmp, sc.name+".paths")
	script := filepath.Join(b.tmp, sc.name+".lua")
	if err := os.WriteFile(paths, []byte(strings.Join(sc.paths, "\n")+"\n"), 0o600); err != nil {
		return benchResult{}, err
	}
	lua := fmt.Sprintf(wrkScript, paths, "Bearer "+sc.token)
	if b.o.Gzip {
		lua += "wrk.headers[\"Accept-Encoding\"] = \"gzip\"\n"
	}
	if err := os.WriteFile(script, []byte(lua), 0o600); err != nil {
		return benchResult{}, err
	}
	secs := max(1, int((d+time.Second-1)/time.Second))
	threads := min(2, b.o.Concurrency)
	cmd := exec.CommandContext(ctx, b.wrk, "-t", strconv.Itoa(threads), "-c", strconv.Itoa(b.o.Concurrency), "-d", strconv.Itoa(secs)+"s",
		"--timeout", "10s", "-s", script, sc.url+"/")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return benchResult{}, fmt.Errorf("wrk: %v: %s", err, strings.TrimSpace(out.String()))
	}
	r, err := parseWrk(out.String())
	if err != nil {
		return r, err
	}
	r.generator = fmt.Sprintf("wrk -t%d -c%d", threads, b.o.Concurrency)
	r.concurrency = b.o.Concurrency
	return r, nil
}

// parseWrk reads the line the script's done() prints: requests, duration
// (µs), p50, p99 and max latency (µs), non-2xx answers and socket errors.
func parseWrk(out string) (benchResult, error) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 8 || f[0] != "CPIS-WRK" {
			continue
		}
		var n [7]int64
		for i := range n {
			v, err := strconv.ParseInt(f[i+1], 10, 64)
			if err != nil {
				return benchResult{}, fmt.Errorf("wrk: reading %q: %w", sc.Text(), err)
			}
			n[i] = v
		}
		us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
		r := benchResult{requests: int(n[0]), p50: us(n[2]), p99: us(n[3]), max: us(n[4]), errs: int(n[5] + n[6]), elapsed: us(n[1])}
		if n[1] > 0 {
			r.rate = float64(n[0]) / us(n[1]).Seconds()
		}
		return r, nil
	}
	return benchResult{}, errors.New("wrk: no result line in its output: " + strings.TrimSpace(out))
}

func (b *benchRun) do(ctx context.Context, method, url, token string, body []byte, prefer string) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", fhir.MIME)
	}
	if prefer != "" {
		req.Header.Set("Prefer", prefer)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

// cpuPerRequest is the CPU an answer cost: to 0.1 µs below 100 µs, to
// the µs below 100 ms, else to the ms.
func cpuPerRequest(cpu time.Duration, requests int) string {
	d := cpu / time.Duration(requests)
	switch {
	case d >= 100*time.Millisecond:
		return d.Round(time.Millisecond).String()
	case d >= 100*time.Microsecond:
		return d.Round(time.Microsecond).String()
	}
	return d.Round(100 * time.Nanosecond).String()
}

// report prints the table: each scenario's throughput as a share of the
// bare gin route and of /_ping, measured in the same run, and the CPU each
// answer cost.
func (b *benchRun) report() error {
	var ceiling, ping float64
	for _, r := range b.results {
		switch r.name {
		case "gin-ceiling":
			ceiling = r.rate
		case "ping":
			ping = r.rate
		}
	}
	share := func(rate, of float64) string {
		if of <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f%%", 100*rate/of)
	}
	fmt.Fprintf(b.out, "\n%d children, %d access records; %d connections; %s per scenario\n", b.o.Children, b.o.AuditEvents, b.o.Concurrency, b.o.Duration)
	w := tabwriter.NewWriter(b.out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "scenario\trequests\treq/s\tvs-gin\tvs-ping\tp50\tp99\terrors\tpeak-RSS-MB\tCPU/req\t")
	for _, r := range b.results {
		rss := "n/a"
		if r.rss > 0 {
			rss = strconv.FormatInt(r.rss/1024, 10)
		}
		cpu := "n/a"
		if r.cpu > 0 && r.requests > 0 {
			cpu = cpuPerRequest(r.cpu, r.requests)
		}
		fmt.Fprintf(w, "%s\t%d\t%.1f\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t\n", r.name, r.requests, r.rate, share(r.rate, ceiling), share(r.rate, ping),
			r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond), r.errs, rss, cpu)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	for _, r := range b.results {
		fmt.Fprintf(b.out, "  %s: %s [%s]\n", r.name, r.what, r.generator)
		if r.note != "" {
			fmt.Fprintf(b.out, "    %s\n", r.note)
		}
	}
	if b.coldStart > 0 {
		fmt.Fprintf(b.out, "cold start (process start to /readyz 200): %s\n", b.coldStart.Round(time.Millisecond))
	}
	if size := DirSize(b.o.DataDir); size > 0 {
		fmt.Fprintf(b.out, "store: %s in the data directory (database and write-ahead log)\n", MB(size))
	}
	for _, n := range b.notes {
		fmt.Fprintln(b.out, n)
	}
	return nil
}
