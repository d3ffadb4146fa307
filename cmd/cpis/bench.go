package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
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
)

// bench is the load command: it starts a server (or targets one), seeds
// children through the upload path, mints tokens and drives each scenario
// at a concurrency for a time, printing throughput, latency and the
// server's peak memory, with each scenario's throughput as a ratio to a
// fixed route through the same middleware (the ceiling).
func bench(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cfg, _, err := loadConfig("bench", nil, getenv, io.Discard)
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stdout)
	var (
		target      = fs.String("target", "", "base URL of a running server (http://host:port); default: start one")
		dataDir     = fs.String("data-dir", "", "data directory: of the server to start (default: a new temporary one), or of the --target server, to mint tokens with its local key")
		children    = fs.Int("children", 100000, "synthetic children to seed before measuring (0: seed nothing)")
		laCount     = fs.Int("la-count", 20, "local authorities the children are spread over")
		concurrency = fs.Int("concurrency", 32, "concurrent clients per scenario")
		duration    = fs.Duration("duration", 10*time.Second, "how long each scenario runs")
		warmup      = fs.Duration("warmup", 2*time.Second, "unmeasured load before each scenario")
		txCount     = fs.Int("transactions", 5, "1,000-entry transaction uploads to time, one at a time")
		only        = fs.String("scenarios", "", "comma-separated scenarios to run (default all): "+strings.Join(scenarioNames(), ","))
		keep        = fs.Bool("keep", false, "keep the temporary data directory")
		seeded      = fs.Bool("seeded", false, "the data directory already holds this run's children (from an earlier run with --keep): do not upload them again")
	)
	if err := fs.Parse(args); err != nil {
		return badConfig("bench: %v", err)
	}
	if *concurrency < 1 || *concurrency > 1024 || *duration <= 0 || *children < 0 || *children > maxSeedChildren || *laCount < 1 || *laCount > maxSeedLAs {
		return badConfig("bench: --concurrency 1-1024, --duration > 0, --children 0-%d and --la-count 1-%d", maxSeedChildren, maxSeedLAs)
	}
	b := &benchRun{out: stdout, concurrency: *concurrency, duration: *duration, warmup: *warmup, txCount: *txCount}
	b.client = &http.Client{Transport: &http.Transport{MaxIdleConns: 2 * *concurrency, MaxIdleConnsPerHost: 2 * *concurrency, IdleConnTimeout: time.Minute}, Timeout: time.Minute}

	switch {
	case *target != "":
		if *dataDir == "" {
			return badConfig("bench: --target needs --data-dir, the target server's data directory, to mint tokens with its local key")
		}
		b.base = strings.TrimSuffix(*target, "/") + "/FHIR/R4"
	default:
		if *dataDir == "" {
			if *dataDir, err = os.MkdirTemp("", "cpis-bench-"); err != nil {
				return err
			}
			if !*keep {
				defer os.RemoveAll(*dataDir)
			}
		}
		stop, err := b.startServer(ctx, *dataDir)
		if err != nil {
			return err
		}
		defer stop()
	}
	key, _, err := auth.LoadOrCreateLocalKey(*dataDir)
	if err != nil {
		return err
	}
	if err := b.tokens(key, cfg.Issuer, cfg.Audience); err != nil {
		return err
	}
	data := newDemoData(1, *children, *laCount, time.Now().UTC().AddDate(0, 0, -1), cfg.RetentionDays)
	if !*seeded {
		if err := b.seed(ctx, key, cfg, data); err != nil {
			return err
		}
	}
	b.pick(data)
	for _, sc := range b.scenarios(*only) {
		if err := ctx.Err(); err != nil {
			return err
		}
		b.results = append(b.results, sc.run())
	}
	return b.report(*children)
}

// benchRun is one run of the load command.
type benchRun struct {
	out                   io.Writer
	client                *http.Client
	base                  string
	pid                   int // the server's, when bench started it
	concurrency, txCount  int
	duration, warmup      time.Duration
	la, nurse, gp         string
	laODS, laName         string
	hits, misses, flagIDs []string
	next                  atomic.Int64 // spreads picks over the data
	started               time.Time
	results               []benchResult
	seedRate              float64
}

// startServer runs `cpis serve` from this executable on a free loopback
// port with the data directory, and waits for it to be ready.
func (b *benchRun) startServer(ctx context.Context, dir string) (func(), error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(self, "serve")
	cmd.Env = append(os.Environ(), "CPIS_ADDR="+addr, "CPIS_DATA_DIR="+dir, "CPIS_BASE_URL=http://"+addr+"/FHIR/R4", "CPIS_LOG_LEVEL=info")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard // the server logs a line per request: read, written, and thrown away
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	b.pid = cmd.Process.Pid
	b.base = "http://" + addr + "/FHIR/R4"
	stop := func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := b.client.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return stop, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			stop()
			return nil, fmt.Errorf("bench: the server did not become ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tokens mints a local authority's, a nurse's (B0107) and a GP's (B0170).
func (b *benchRun) tokens(key *auth.LocalKey, iss, aud string) error {
	now := time.Now()
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
// the upload path, a few at a time.
func (b *benchRun) seed(ctx context.Context, key *auth.LocalKey, cfg *config, d *demoData) error {
	if len(d.plans) == 0 {
		return nil
	}
	tokens := map[string]string{}
	var err error
	for _, la := range d.las {
		if tokens[la.ods], err = key.MintSystem(auth.SystemToken{ClientID: "cpis-bench", OrgCode: la.ods, OrgName: la.name,
			Scopes: []string{"system/EpisodeOfCare.write", "system/Organization.write"}}, cfg.Issuer, cfg.Audience, time.Now(), 12*time.Hour); err != nil {
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
	b.seedRate = float64(d.resources()) / time.Since(start).Seconds()
	fmt.Fprintf(b.out, "seeded %d children (%d plans, %d local authorities) through transaction Bundles in %s: %.0f resources/s\n",
		len(d.plans), len(d.plans), len(d.las), time.Since(start).Round(time.Millisecond), b.seedRate)
	return nil
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

// pick chooses the NHS numbers and Flag ids the scenarios ask about: those
// of served plans (hits) and numbers no plan has (misses, as most lookups in
// an emergency department are).
func (b *benchRun) pick(d *demoData) {
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
	for i := 0; i < len(b.hits) && len(b.flagIDs) < 2000; i++ {
		status, body, err := b.do(context.Background(), http.MethodGet, b.base+"/Flag?"+nhsQuery(b.hits[i])+"&silent=true", b.gp, nil, "")
		if err != nil || status != http.StatusOK {
			continue
		}
		var bundle struct {
			Entry []struct {
				Resource struct {
					ID string `json:"id"`
				} `json:"resource"`
			} `json:"entry"`
		}
		if json.Unmarshal(body, &bundle) == nil {
			for _, e := range bundle.Entry {
				b.flagIDs = append(b.flagIDs, e.Resource.ID)
			}
		}
	}
	b.started = time.Now().UTC()
}

func nhsQuery(nhs string) string {
	return "patient:identifier=" + fhir.NHSNumberSystem + "%7C" + nhs
}

// nextNHS gives mostly numbers with plans, and one in four without.
func (b *benchRun) nextNHS() string {
	n := b.next.Add(1)
	if n%4 == 0 || len(b.hits) == 0 {
		return b.misses[int(n)%len(b.misses)]
	}
	return b.hits[int(n)%len(b.hits)]
}

// scenario is one measured kind of request.
type scenario struct {
	name, what  string
	concurrency int
	request     func() (method, url, token string, body []byte)
	count       int // run exactly this many requests instead of for a duration
	b           *benchRun
}

func scenarioNames() []string {
	return []string{"ceiling", "silent-search", "audited-search", "read-by-id", "access-history", "transaction", "feed-page"}
}

func (b *benchRun) scenarios(only string) []scenario {
	want := map[string]bool{}
	for _, n := range strings.Split(only, ",") {
		if n = strings.TrimSpace(n); n != "" {
			want[n] = true
		}
	}
	fresh := nhsNumbers(997000000)
	var txSeq atomic.Int64
	all := []scenario{
		{name: "ceiling", what: "GET /_ping: a fixed answer through the same middleware (token check included)",
			request: func() (string, string, string, []byte) { return "GET", b.base + "/_ping", b.nurse, nil }},
		{name: "silent-search", what: "GET /Flag?patient:identifier=…&silent=true (B0170)",
			request: func() (string, string, string, []byte) {
				return "GET", b.base + "/Flag?" + nhsQuery(b.nextNHS()) + "&silent=true", b.gp, nil
			}},
		{name: "audited-search", what: "GET /Flag?patient:identifier=… (B0107): a durable AuditEvent per request",
			request: func() (string, string, string, []byte) {
				return "GET", b.base + "/Flag?" + nhsQuery(b.nextNHS()), b.nurse, nil
			}},
		{name: "read-by-id", what: "GET /Flag/{id} (B0107): reads by id are always audited",
			request: func() (string, string, string, []byte) {
				id := "missing"
				if len(b.flagIDs) > 0 {
					id = b.flagIDs[int(b.next.Add(1))%len(b.flagIDs)]
				}
				return "GET", b.base + "/Flag/" + id, b.nurse, nil
			}},
		{name: "access-history", what: "GET /AuditEvent?patient:identifier=… (B0107)",
			request: func() (string, string, string, []byte) {
				return "GET", b.base + "/AuditEvent?" + nhsQuery(b.nextNHS()), b.nurse, nil
			}},
		{name: "transaction", what: "POST / with a 1,000-entry transaction Bundle of new plans, one at a time", concurrency: 1, count: b.txCount,
			request: func() (string, string, string, []byte) {
				n := txSeq.Add(1)
				la := demoLA{ods: b.laODS, name: b.laName}
				j := job{la: la}
				for i := 0; i < 1000; i++ {
					e, _ := planEntry(la, demoPlan{ident: fmt.Sprintf("BENCH-%d-%04d", n, i), typ: "CPP", nhs: fresh(), start: "2026-01-01"})
					j.entries = append(j.entries, e)
				}
				return "POST", b.base, b.la, bundleBody(j, "transaction")
			}},
		{name: "feed-page", what: "GET /AuditEvent?date=ge…&_count=50: one page of the LA's notification feed",
			request: func() (string, string, string, []byte) {
				return "GET", b.base + "/AuditEvent?date=ge" + b.started.Format("2006-01-02") + "&_count=50", b.la, nil
			}},
	}
	var out []scenario
	for _, sc := range all {
		if len(want) > 0 && !want[sc.name] {
			continue
		}
		sc.b = b
		if sc.concurrency == 0 {
			sc.concurrency = b.concurrency
		}
		out = append(out, sc)
	}
	return out
}

// benchResult is what one scenario measured.
type benchResult struct {
	name, what     string
	concurrency    int
	requests, errs int
	rate           float64
	p50, p99, max  time.Duration
	rss            int64 // the server's peak resident memory so far, KiB
}

// run drives the scenario: warm-up, then measured load.
func (sc scenario) run() benchResult {
	b := sc.b
	if sc.count == 0 && b.warmup > 0 {
		sc.drive(b.warmup, 0)
	}
	lat, errs, elapsed := sc.drive(b.duration, sc.count)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	r := benchResult{name: sc.name, what: sc.what, concurrency: sc.concurrency, requests: len(lat), errs: errs, rss: peakRSS(b.pid)}
	if len(lat) > 0 {
		r.rate = float64(len(lat)) / elapsed.Seconds()
		r.p50, r.p99, r.max = lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)], lat[len(lat)-1]
	}
	fmt.Fprintf(b.out, "%-15s %8.0f req/s  p50 %8s  p99 %8s  errors %d\n", sc.name, r.rate, r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond), errs)
	return r
}

// drive runs the scenario's clients for d (or for count requests) and
// returns every latency and the number of failures.
func (sc scenario) drive(d time.Duration, count int) ([]time.Duration, int, time.Duration) {
	b := sc.b
	var mu sync.Mutex
	var all []time.Duration
	errs := 0
	var left atomic.Int64
	left.Store(int64(count))
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for c := 0; c < sc.concurrency; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			bad := 0
			for {
				if count > 0 {
					if left.Add(-1) < 0 {
						break
					}
				} else if time.Now().After(deadline) {
					break
				}
				method, url, token, body := sc.request()
				t0 := time.Now()
				status, _, err := b.do(context.Background(), method, url, token, body, "return=minimal")
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
	return all, errs, time.Since(start)
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

// report prints the table: each scenario's throughput as a ratio to the
// ceiling measured in the same run.
func (b *benchRun) report(children int) error {
	ceiling := 0.0
	for _, r := range b.results {
		if r.name == "ceiling" {
			ceiling = r.rate
		}
	}
	fmt.Fprintf(b.out, "\n%d children seeded; %d concurrent clients; %s per scenario\n", children, b.concurrency, b.duration)
	w := tabwriter.NewWriter(b.out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "scenario\tclients\trequests\treq/s\tvs ceiling\tp50\tp99\terrors\tserver peak RSS\t")
	for _, r := range b.results {
		ratio := "-"
		if ceiling > 0 && r.name != "ceiling" {
			ratio = fmt.Sprintf("%.0f%%", 100*r.rate/ceiling)
		}
		rss := "n/a"
		if r.rss > 0 {
			rss = fmt.Sprintf("%d MB", r.rss/1024)
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%.0f\t%s\t%s\t%s\t%d\t%s\t\n", r.name, r.concurrency, r.requests, r.rate, ratio,
			r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond), r.errs, rss)
	}
	return w.Flush()
}
