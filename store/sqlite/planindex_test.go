package sqlite

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/fhir"
	"cpis/store"
	"cpis/store/storetest"
)

func nhsNumbers(n int) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		nine := fmt.Sprintf("999%06d", i)
		if d := fhir.NHSNumberCheckDigit(nine); d >= 0 {
			out = append(out, fmt.Sprintf("%s%d", nine, d))
		}
	}
	return out
}

func planRec(id string, v int64, subject, owner string, at time.Time) store.Record {
	return store.Record{Type: "EpisodeOfCare", ID: id, Version: v, Updated: at, Owner: owner, Subject: subject,
		Body:    []byte(fmt.Sprintf(`{"resourceType":"EpisodeOfCare","id":%q,"v":%d}`, id, v)),
		Derived: &store.Derived{Type: "Flag", Body: []byte(fmt.Sprintf(`{"resourceType":"Flag","id":%q,"v":%d}`, id, v))}}
}

func flagsOf(t *testing.T, s *Store, nhs string) []string {
	t.Helper()
	recs, _, err := s.Search(context.Background(), store.Query{Type: "Flag", Subject: nhs, Limit: 50, Count: true})
	require.NoError(t, err)
	var out []string
	for _, r := range recs {
		out = append(out, fmt.Sprintf("%s@%d", r.ID, r.Version))
	}
	return out
}

// TestHazard_PlanIndexMissesAnotherProcessWrite: the index is kept by this
// process's writer; a plan written to the same file by another store (a
// second Open, as cpis import or a second server would) must show in the
// next search here, and so must its removal, never the index's old answer.
func TestHazard_PlanIndexMissesAnotherProcessWrite(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s1, err := Open(dir, Options{})
	require.NoError(t, err)
	defer s1.Close()
	nhs := nhsNumbers(2)
	require.NoError(t, s1.Commit(ctx, []store.Write{{Record: planRec("p0", 1, nhs[0], "LA001", time.Now())}}))
	for range 2 { // read through SQL and held, then answered from the index
		assert.Equal(t, []string{"p0@1"}, flagsOf(t, s1, nhs[0]))
		assert.Empty(t, flagsOf(t, s1, nhs[1]))
	}
	before := s1.PlanIndex()
	require.True(t, before.Valid)
	require.Positive(t, before.Hits, "the searches above were answered from the index")

	s2, err := Open(dir, Options{NoPlanIndex: true})
	require.NoError(t, err)
	defer s2.Close()
	require.NoError(t, s2.Commit(ctx, []store.Write{{Record: planRec("p1", 1, nhs[1], "LA002", time.Now())}}))
	assert.Equal(t, []string{"p1@1"}, flagsOf(t, s1, nhs[1]), "a plan another store wrote")

	// An NHS-number correction and a delete by the other store.
	p0 := planRec("p0", 2, nhs[1], "LA001", time.Now())
	require.NoError(t, s2.Commit(ctx, []store.Write{{Record: p0, Expect: 1}}))
	assert.Empty(t, flagsOf(t, s1, nhs[0]), "the plan moved to another NHS number")
	assert.Equal(t, []string{"p0@2", "p1@1"}, flagsOf(t, s1, nhs[1]))
	require.NoError(t, s2.Commit(ctx, []store.Write{{Record: store.Record{Type: "EpisodeOfCare", ID: "p1", Version: 2, Updated: time.Now(),
		Deleted: true, Owner: "LA002", Subject: nhs[1]}, Expect: 1}}))
	assert.Equal(t, []string{"p0@2"}, flagsOf(t, s1, nhs[1]), "a plan the other store deleted")

	// The index is emptied, then fills again and serves again, with the
	// other's writes.
	require.Eventually(t, func() bool {
		hits := s1.PlanIndex().Hits
		return assert.Equal(t, []string{"p0@2"}, flagsOf(t, s1, nhs[1])) && s1.PlanIndex().Hits > hits
	}, 5*time.Second, 10*time.Millisecond, "answered from the index again")
	assert.Empty(t, flagsOf(t, s1, nhs[0]))
	assert.Greater(t, s1.PlanIndex().Clears, before.Clears)

	// And this store's own writes keep it current without emptying it.
	clears := s1.PlanIndex().Clears
	hits := s1.PlanIndex().Hits
	require.NoError(t, s1.Commit(ctx, []store.Write{{Record: planRec("p2", 1, nhs[0], "LA001", time.Now())}}))
	assert.Equal(t, []string{"p2@1"}, flagsOf(t, s1, nhs[0]))
	assert.Equal(t, []string{"p0@2"}, flagsOf(t, s1, nhs[1]))
	assert.Equal(t, clears, s1.PlanIndex().Clears)
	assert.Equal(t, hits+2, s1.PlanIndex().Hits)
}

const envIndexWriter = "CPIS_TEST_PLAN_INDEX_WRITER"

// TestHazard_PlanIndexMissesAnotherOSProcessWrite is the hazard above with
// a real second process (this test binary, run again) writing the file.
func TestHazard_PlanIndexMissesAnotherOSProcessWrite(t *testing.T) {
	if dir := os.Getenv(envIndexWriter); dir != "" {
		s, err := Open(dir, Options{NoPlanIndex: true, CheckTimeout: -1})
		require.NoError(t, err)
		defer s.Close()
		require.NoError(t, s.Commit(context.Background(), []store.Write{{Record: planRec("other", 1, nhsNumbers(3)[2], "LA003", time.Now())}}))
		return
	}
	dir := t.TempDir()
	s1, err := Open(dir, Options{})
	require.NoError(t, err)
	defer s1.Close()
	nhs := nhsNumbers(3)[2]
	assert.Empty(t, flagsOf(t, s1, nhs))
	assert.Empty(t, flagsOf(t, s1, nhs))
	require.Positive(t, s1.PlanIndex().Hits, "the child without a plan is known to the index")
	cmd := exec.Command(os.Args[0], "-test.run", "^TestHazard_PlanIndexMissesAnotherOSProcessWrite$", "-test.count=1")
	cmd.Env = append(os.Environ(), envIndexWriter+"="+dir)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Equal(t, []string{"other@1"}, flagsOf(t, s1, nhs), "a plan another process wrote")
}

// TestPlanIndexAgreesWithSQL runs random writes (new plans, updates,
// NHS-number corrections, end dates, deletes, purges, failed writes) and
// after each round asks every kind of search by NHS number of the store
// with the index and of one without it on the same file: the answers must
// be the same.
func TestPlanIndexAgreesWithSQL(t *testing.T) {
	t.Run("held", func(t *testing.T) { agreesWithSQL(t, Options{PlanIndexBodies: 600}, 0) })
	// Two NHS numbers held at most: numbers are dropped and read again all
	// the time, by searches running while the writes commit.
	t.Run("refilled-while-written", func(t *testing.T) { agreesWithSQL(t, Options{PlanIndexBodies: 600, PlanIndexSubjects: 2}, 4) })
}

// agreesWithSQL is TestPlanIndexAgreesWithSQL with searchers searching
// while the writes of each round commit.
func agreesWithSQL(t *testing.T, opts Options, searchers int) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open(dir, opts) // a few bodies held, the rest read by key
	require.NoError(t, err)
	defer s.Close()
	ref, err := Open(dir, Options{NoPlanIndex: true})
	require.NoError(t, err)
	defer ref.Close()
	nhs := nhsNumbers(6)
	owners := []string{"LA001", "LA002", "LA003"}
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	type cur struct {
		rec store.Record
	}
	live := map[string]*cur{}
	versions := map[string]int64{}
	tick := 0
	for round := 0; round < 60; round++ {
		var writes []store.Write
		for n := rng.IntN(4) + 1; n > 0; n-- {
			tick++
			id := fmt.Sprintf("p%02d", rng.IntN(14))
			v := versions[id]
			r := planRec(id, v+1, nhs[rng.IntN(len(nhs))], owners[rng.IntN(len(owners))], base.Add(time.Duration(rng.IntN(20))*time.Second))
			if c, ok := live[id]; ok && rng.IntN(3) == 0 {
				r.Subject, r.Owner = c.rec.Subject, c.rec.Owner // an update in place
			}
			if rng.IntN(3) == 0 {
				r.End = base.Add(time.Duration(rng.IntN(40)-20) * time.Minute)
			}
			if rng.IntN(4) != 0 {
				// Starts that tie, and some plans with none (sorted last).
				r.Start = base.Add(time.Duration(rng.IntN(5)) * time.Hour)
			}
			if rng.IntN(5) == 0 {
				r.Derived.Ends = base.Add(time.Duration(rng.IntN(40)) * time.Minute)
			}
			if v > 0 && rng.IntN(6) == 0 {
				r = store.Record{Type: "EpisodeOfCare", ID: id, Version: v + 1, Updated: r.Updated, Deleted: true, Owner: r.Owner, Subject: r.Subject}
			}
			if _, dup := findWrite(writes, id); dup {
				continue
			}
			writes = append(writes, store.Write{Record: r, Expect: v})
		}
		if rng.IntN(8) == 0 && len(writes) > 0 {
			// A write that fails (a stale version) leaves nothing.
			bad := writes[0]
			bad.Expect += 7
			bad.Record.Version += 7
			require.ErrorIs(t, s.Commit(ctx, []store.Write{bad}), store.ErrVersionConflict)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for g := range searchers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := g; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					if _, _, err := s.Search(ctx, store.Query{Type: "Flag", Subject: nhs[i%len(nhs)], Limit: 50, Count: true}); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		if rng.IntN(2) == 0 {
			require.NoError(t, s.Commit(ctx, writes), "round %d", round)
		} else {
			// One at a time and concurrently, so several share a commit.
			errs := make(chan error, len(writes))
			for _, w := range writes {
				go func() { errs <- s.Commit(ctx, []store.Write{w}) }()
			}
			for range writes {
				require.NoError(t, <-errs)
			}
		}
		close(stop)
		wg.Wait()
		for _, w := range writes {
			versions[w.Record.ID] = w.Record.Version
			if w.Record.Deleted {
				delete(live, w.Record.ID)
			} else {
				live[w.Record.ID] = &cur{rec: w.Record}
			}
		}
		if round%10 == 9 {
			_, err := s.Purge(ctx, base.Add(-5*time.Minute))
			require.NoError(t, err)
			for id := range versions {
				rec, err := ref.Get(ctx, "EpisodeOfCare", id)
				switch {
				case err != nil:
					delete(versions, id)
					delete(live, id)
				case rec.Deleted:
					delete(live, id)
				default:
					live[id] = &cur{rec: rec}
				}
			}
		}
		for _, subject := range nhs {
			for _, q := range indexQueries(subject, base) {
				want, wantN, err := ref.Search(ctx, q)
				require.NoError(t, err)
				got, gotN, err := s.Search(ctx, q)
				require.NoError(t, err)
				require.Equal(t, wantN, gotN, "round %d total of %+v", round, q)
				require.Equal(t, want, got, "round %d %+v", round, q)
			}
		}
	}
	st := s.PlanIndex()
	assert.True(t, st.Valid)
	assert.Positive(t, st.Hits)
	if searchers > 0 {
		assert.Greater(t, st.Fills, int64(100), "numbers read again many times")
	}
	assert.LessOrEqual(t, st.Bodies, int64(600))
	t.Logf("plan index: %+v", st)
}

func findWrite(ws []store.Write, id string) (store.Write, bool) {
	for _, w := range ws {
		if w.Record.ID == id {
			return w, true
		}
	}
	return store.Write{}, false
}

// indexQueries are the searches by NHS number the registry makes, and
// their variants.
func indexQueries(subject string, base time.Time) []store.Query {
	var qs []store.Query
	for _, typ := range []string{"Flag", "EpisodeOfCare"} {
		for _, q := range []store.Query{
			{Limit: 50, Count: true},
			{Limit: 2, Count: true},
			{Limit: 2, After: "p05", Count: true},
			{Limit: 0, Count: true},
			{Limit: 3},
			{Limit: 50, Count: true, RetainedSince: base},
			{Limit: 50, Count: true, Owner: "LA002"},
			{Limit: 50, IDs: []string{"p01", "p03", "p07"}},
			{Limit: 50, UpdatedFrom: base.Add(5 * time.Second), UpdatedTo: base.Add(15 * time.Second)},
			{Limit: 2, Sort: store.SortUpdated, Count: true},
			{Limit: 2, Sort: store.SortUpdatedDesc, Count: true},
			{Limit: 3, Sort: store.SortUpdated, After: "p04", AfterUpdated: base.Add(10 * time.Second)},
			{Limit: 3, Sort: store.SortUpdatedDesc, After: "p04", AfterUpdated: base.Add(10 * time.Second)},
			{Limit: 50, Sort: store.SortStart, Count: true},
			{Limit: 50, Sort: store.SortStartDesc, Count: true},
			{Limit: 2, Sort: store.SortStart, After: "p04", AfterStart: base.Add(2 * time.Hour)},
			{Limit: 2, Sort: store.SortStartDesc, After: "p04", AfterStart: base.Add(2 * time.Hour)},
			{Limit: 3, Sort: store.SortStart, After: "p06"},
			{Limit: 3, Sort: store.SortStartDesc, After: "p06"},
		} {
			q.Type, q.Subject = typ, subject
			qs = append(qs, q)
		}
	}
	return qs
}

// TestConformanceThroughThePlanIndex: the store suite, whose searches by
// NHS number the index answers (entered-in-error, ended plans, deletes,
// corrections: exactly as SQL does).
func TestConformanceThroughThePlanIndex(t *testing.T) {
	var opened []*Store
	dirs := map[store.Store]string{}
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) store.Store {
			dir := t.TempDir()
			s, err := Open(dir, Options{})
			require.NoError(t, err)
			opened = append(opened, s)
			dirs[s] = dir
			return s
		},
		Reopen: func(t *testing.T, s store.Store) store.Store {
			require.NoError(t, s.Close())
			s2, err := Open(dirs[s], Options{})
			require.NoError(t, err)
			opened = append(opened, s2)
			return s2
		},
	})
	var hits int64
	for _, s := range opened {
		hits += s.PlanIndex().Hits
	}
	assert.Positive(t, hits, "the suite's searches by NHS number went through the index")
}

// BenchmarkPlanIndexMemory loads children (one plan and Flag each, bodies
// of the size the server writes; CPIS_BENCH_CHILDREN, default 150,000),
// searches each once, and reports the heap the plan index then takes (at
// its bounds, CPIS_BENCH_INDEX_SUBJECTS NHS numbers, default 50,000, and
// 8 MiB of bodies), and the time to open the store.
func BenchmarkPlanIndexMemory(b *testing.B) {
	n := 150000
	if v, err := fmt.Sscan(os.Getenv("CPIS_BENCH_CHILDREN"), &n); err != nil || v != 1 {
		n = 150000
	}
	dir := b.TempDir()
	s, err := Open(dir, Options{NoPlanIndex: true, CheckTimeout: -1})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	body, flag := make([]byte, 1400), make([]byte, 950)
	var writes []store.Write
	for i, nhs := range nhsNumbers(n) {
		writes = append(writes, store.Write{Record: store.Record{Type: "EpisodeOfCare", ID: fmt.Sprintf("0190f0a2-%04x-7000-8000-%012x", i%65536, i), Version: 1,
			Updated: time.Now(), Owner: fmt.Sprintf("LA%03d", i%150), Subject: nhs, End: time.Now().AddDate(1, 0, 0), Body: body,
			Derived: &store.Derived{Type: "Flag", Body: flag, Ends: time.Now().AddDate(1, 0, 0)}}})
		if len(writes) == 2000 {
			if err := s.Commit(ctx, writes); err != nil {
				b.Fatal(err)
			}
			writes = writes[:0]
		}
	}
	if err := s.Commit(ctx, writes); err != nil {
		b.Fatal(err)
	}
	s.Close()
	subjects := nhsNumbers(n)
	held := 0
	if v, err := fmt.Sscan(os.Getenv("CPIS_BENCH_INDEX_SUBJECTS"), &held); err != nil || v != 1 {
		held = 0
	}
	for b.Loop() {
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		start := time.Now()
		s, err := Open(dir, Options{CheckTimeout: -1, PlanIndexSubjects: held})
		if err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		start = time.Now()
		for _, nhs := range subjects {
			if _, _, err := s.Search(ctx, store.Query{Type: "Flag", Subject: nhs, Limit: 50, Count: true}); err != nil {
				b.Fatal(err)
			}
		}
		fillTook := time.Since(start)
		runtime.GC()
		runtime.ReadMemStats(&m1)
		st := s.PlanIndex()
		b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/(1<<20), "MB-heap")
		b.ReportMetric(float64(st.Bodies)/(1<<20), "MB-bodies")
		b.ReportMetric(float64(st.Subjects), "subjects-held")
		b.ReportMetric(took.Seconds(), "s-open")
		b.ReportMetric(fillTook.Seconds(), "s-first-search-each")
		s.Close()
	}
}

// TestPlanIndexSearchAfterClose: the index's mapping of the -shm header is
// gone once the store is closed; a search then fails, it neither answers
// from the index nor reads unmapped memory.
func TestPlanIndexSearchAfterClose(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	require.NoError(t, err)
	nhs := nhsNumbers(1)[0]
	require.NoError(t, s.Commit(context.Background(), []store.Write{{Record: planRec("p0", 1, nhs, "LA001", time.Now())}}))
	for range 2 {
		assert.Equal(t, []string{"p0@1"}, flagsOf(t, s, nhs))
	}
	require.NoError(t, s.Close())
	_, _, err = s.Search(context.Background(), store.Query{Type: "Flag", Subject: nhs, Limit: 50, Count: true})
	require.Error(t, err)
}

// TestHazard_PlanIndexMissesAnotherWriteBeforeItsOwn: another store writes,
// then this store's writer commits (an access record) before anyone
// searches. The writer's commit moves the counter too; it must notice the
// other's commit before its own, not take the counter as all its own.
func TestHazard_PlanIndexMissesAnotherWriteBeforeItsOwn(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s1, err := Open(dir, Options{})
	require.NoError(t, err)
	defer s1.Close()
	nhs := nhsNumbers(1)[0]
	for range 2 {
		assert.Empty(t, flagsOf(t, s1, nhs))
	}
	require.Positive(t, s1.PlanIndex().Hits)
	s2, err := Open(dir, Options{NoPlanIndex: true})
	require.NoError(t, err)
	defer s2.Close()
	require.NoError(t, s2.Commit(ctx, []store.Write{{Record: planRec("p1", 1, nhs, "LA002", time.Now())}}))
	require.NoError(t, s1.Audit(ctx, []store.AuditRecord{{ID: "a1", Recorded: time.Now(), Subject: nhs, Agent: "user:1", Notify: true,
		Owners: []string{"LA002"}, Body: []byte(`{"resourceType":"AuditEvent"}`)}}))
	for range 2 {
		assert.Equal(t, []string{"p1@1"}, flagsOf(t, s1, nhs))
	}
}

// TestPlanIndexHoldsFlagsPacked: the index holds Flag bodies packed, so a
// budget that holds a few of them as JSON holds them all, and searches
// for every child are answered from memory, each Flag exactly as stored.
func TestPlanIndexHoldsFlagsPacked(t *testing.T) {
	const children = 40
	const budget = 12 << 10 // about eleven Flags as JSON
	s, err := Open(t.TempDir(), Options{PlanIndexBodies: budget})
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	nhs := nhsNumbers(children)
	now := time.Now().UTC()
	var writes []store.Write
	raw := 0
	for i, n := range nhs {
		id := fmt.Sprintf("01a241b5-f080-7068-bbc8-%012x", i)
		la := fmt.Sprintf("LA%03d", i%20)
		flag := fmt.Sprintf(`{"resourceType":"Flag","id":%q,"meta":{"versionId":"1","lastUpdated":%q,"profile":["https://fhir.cpis.dev/StructureDefinition/CPIS-Flag"]},"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/flag-detail","valueReference":{"reference":"EpisodeOfCare/%s"}}],"status":"active","category":[{"coding":[{"system":"https://fhir.nhs.uk/England/CodeSystem/PatientFlagCategory","code":"CP-IS","display":"Child Protection - Information Sharing Flag"}]}],"code":{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/plan-type","code":"CPP","display":"Child Protection Plan"},{"system":"http://snomed.info/sct","code":"1064311000000109","display":"Child protection plan"}],"text":"Child Protection Plan"},"subject":{"type":"Patient","identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":%q}},"period":{"start":"2025-%02d-%02d"},"author":{"type":"Organization","identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":%q},"display":"Council %d"}}`,
			id, now.Format("2006-01-02T15:04:05.000Z"), id, n, 1+i%12, 1+i%28, la, i%20)
		raw += len(flag)
		writes = append(writes, store.Write{Record: store.Record{Type: "EpisodeOfCare", ID: id, Version: 1, Updated: now, Owner: la, Subject: n,
			Body: []byte(fmt.Sprintf(`{"resourceType":"EpisodeOfCare","id":%q}`, id)), Derived: &store.Derived{Type: "Flag", Body: []byte(flag)}}})
	}
	require.Greater(t, raw, 3*budget, "the Flags as JSON are several budgets")
	require.NoError(t, s.Commit(ctx, writes))
	for round := 0; round < 2; round++ { // the first fills, the second is answered from the index
		for i, n := range nhs {
			recs, _, err := s.Search(ctx, store.Query{Type: "Flag", Subject: n, Limit: 10})
			require.NoError(t, err)
			require.Len(t, recs, 1)
			assert.Equal(t, string(writes[i].Record.Derived.Body), string(recs[0].Body), "the Flag as stored")
			assert.Equal(t, n, recs[0].Subject)
		}
	}
	// A plan of a child the index holds is updated: the writer packs the
	// new Flag, and the next search answers it from the index.
	w := writes[7]
	w.Record.Version = 2
	w.Record.Derived = &store.Derived{Type: "Flag", Body: []byte(strings.Replace(string(w.Record.Derived.Body), `"status":"active"`, `"status":"inactive"`, 1))}
	w.Expect = 1
	require.NoError(t, s.Commit(ctx, []store.Write{w}))
	recs, _, err := s.Search(ctx, store.Query{Type: "Flag", Subject: nhs[7], Limit: 10})
	require.NoError(t, err)
	require.Len(t, recs, 1)
	assert.Equal(t, string(w.Record.Derived.Body), string(recs[0].Body), "the updated Flag")
	assert.Equal(t, int64(2), recs[0].Version)
	st := s.PlanIndex()
	assert.Equal(t, int64(children+1), st.Hits, "the second round and the search after the update from the index")
	assert.Zero(t, st.BodyReads, "every Flag held: none read by primary key")
	assert.LessOrEqual(t, st.Bodies, int64(budget))
	t.Logf("%d Flags: %d bytes as JSON, %d held packed", children, raw, st.Bodies)
}
