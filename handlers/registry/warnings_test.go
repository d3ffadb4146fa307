package registry_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"cpis/fhir"
	"cpis/handlers/registry"
	"cpis/store"
)

// dupReads stands between the registry and a real store and sees the
// duplicate check's reads (an LA's plans about NHS numbers). With hold, a
// commit waits until such a read has returned, so the check reads the
// store as it was before the unit; with fail, those reads fail.
type dupReads struct {
	store.Store
	hold, fail bool
	once       sync.Once
	read       chan struct{} // closed once a duplicate check's read has returned
	mu         sync.Mutex
	commits    int // commits that waited for the read
}

func newDupReads(hold, fail bool) *dupReads {
	return &dupReads{hold: hold, fail: fail, read: make(chan struct{})}
}

func dupRead(q store.Query) bool {
	return q.Type == "EpisodeOfCare" && q.Owner != "" && (q.Subject != "" || len(q.Subjects) > 0)
}

func (d *dupReads) Search(ctx context.Context, q store.Query) ([]store.Record, int, error) {
	if !dupRead(q) {
		return d.Store.Search(ctx, q)
	}
	defer d.once.Do(func() { close(d.read) })
	if d.fail {
		return nil, 0, fmt.Errorf("test: %w: the duplicate check's read refused", store.ErrUnavailable)
	}
	return d.Store.Search(ctx, q)
}

func (d *dupReads) Commit(ctx context.Context, writes []store.Write) error {
	if d.hold {
		select {
		case <-d.read:
			d.mu.Lock()
			d.commits++
			d.mu.Unlock()
		case <-time.After(10 * time.Second):
			return errors.New("test: the duplicate check never read the store")
		}
	}
	return d.Store.Commit(ctx, writes)
}

// planOf is a CPP plan of nhsA managed by LA001 with an identifier, and a
// status.
func (f *fixture) planOf(t testing.TB, ident, status string) *registry.Incoming {
	return f.planFor(t, nhsA, ident, status)
}

// planFor is planOf for the child nhs.
func (f *fixture) planFor(t testing.TB, nhs, ident, status string) *registry.Incoming {
	t.Helper()
	body := fmt.Sprintf(`{"resourceType":"EpisodeOfCare","status":%q,
	 "identifier":[{"system":"https://la001.example/plans","value":%q}],
	 "type":[{"coding":[{"system":"https://fhir.cpis.dev/CodeSystem/plan-type","code":"CPP"}]}],
	 "patient":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":%q}},
	 "managingOrganization":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"LA001"}},
	 "period":{"start":"2026-01-10"}}`, status, ident, nhs)
	res, issues := f.codec.Decode([]byte(body))
	require.NotNil(t, res, "%v", issues)
	require.Empty(t, issues)
	return f.reg.NewIncoming(res)
}

func byIdent(in *registry.Incoming, ident string) registry.Change {
	return registry.Change{Op: registry.Put, Type: "EpisodeOfCare", Condition: "https://la001.example/plans|" + ident, In: in}
}

// duplicates is the duplicate-plan warning of a result ("" if none).
func duplicates(res registry.Result) string {
	for _, w := range res.Warnings {
		if strings.Contains(w.Diagnostics, "live CPP plans for the same NHS number") || strings.HasPrefix(w.Diagnostics, "duplicate-plan") {
			return w.Severity + ": " + w.Diagnostics
		}
	}
	return ""
}

// TestDuplicateCheckReadBeforeTheCommitSeesTheUnit: the duplicate check
// reads the store beside the commit, so it may read the LA's plans as they
// were before the unit. Here it always does (the commit waits for it), and
// the warnings are still those of the store as the unit leaves it: a plan
// the unit ends, or deletes, is no duplicate; two plans the unit writes
// for one child are each other's.
func TestDuplicateCheckReadBeforeTheCommitSeesTheUnit(t *testing.T) {
	ctx := context.Background()
	gate := newDupReads(false, false)
	f := newFixture(t, func(s store.Store) store.Store { gate.Store = s; return gate })
	apply := func(mode registry.Mode, changes ...registry.Change) []registry.Result {
		t.Helper()
		gate.hold, gate.once, gate.read = true, sync.Once{}, make(chan struct{})
		res, err := f.reg.Apply(ctx, la("LA001"), changes, mode)
		require.NoError(t, err)
		for _, r := range res {
			require.NoError(t, r.Err)
		}
		return res
	}

	first := apply(registry.Single, byIdent(f.planOf(t, "P1", "active"), "P1"))
	assert.Empty(t, duplicates(first[0]))
	p1 := first[0].Rec.ID

	// The unit ends P1 and writes P2: P1 as read is live, as left is not.
	res := apply(registry.Transaction, byIdent(f.planOf(t, "P1", "finished"), "P1"), byIdent(f.planOf(t, "P2", "active"), "P2"))
	assert.Empty(t, duplicates(res[1]), "P1 ended in the same unit")
	p2 := res[1].Rec.ID

	// P3 and P4 in one unit: neither is stored when the check reads.
	res = apply(registry.Transaction, byIdent(f.planOf(t, "P3", "active"), "P3"), byIdent(f.planOf(t, "P4", "active"), "P4"))
	p3, p4 := res[0].Rec.ID, res[1].Rec.ID
	assert.Contains(t, duplicates(res[0]), p2)
	assert.Contains(t, duplicates(res[0]), p4, "the unit's other plan for the child")
	assert.Contains(t, duplicates(res[1]), p3)
	assert.NotContains(t, duplicates(res[0]), p1, "P1 is finished")

	// Deleting P3 and P4 and updating P2 in one unit: P2 has no duplicate.
	res = apply(registry.Transaction,
		registry.Change{Op: registry.Delete, Type: "EpisodeOfCare", ID: p3},
		registry.Change{Op: registry.Delete, Type: "EpisodeOfCare", ID: p4},
		registry.Change{Op: registry.Put, Type: "EpisodeOfCare", ID: p2, Condition: "https://la001.example/plans|P2", In: f.planOf(t, "P2", "onhold")})
	assert.Empty(t, duplicates(res[2]), "the unit deleted the others")

	// The batch path applies each entry as its own unit.
	res = apply(registry.Batch, byIdent(f.planOf(t, "P5", "active"), "P5"))
	assert.Contains(t, duplicates(res[0]), p2)
	assert.Equal(t, 5, gate.commits, "every commit waited for the check's read")
}

// TestHazard_DuplicateCheckStoreFailureStoresThePlan: when the duplicate
// check cannot read the store, the plan is stored all the same and its
// result says the check could not be made (an information issue, never a
// "no duplicate" silence); the log names the failure without the NHS
// number.
func TestHazard_DuplicateCheckStoreFailureStoresThePlan(t *testing.T) {
	ctx := context.Background()
	gate := newDupReads(false, true)
	f := newFixture(t, func(s store.Store) store.Store { gate.Store = s; return gate })
	res, err := f.reg.Apply(ctx, la("LA001"), []registry.Change{
		byIdent(f.planOf(t, "P1", "active"), "P1"), byIdent(f.planOf(t, "P2", "active"), "P2"),
	}, registry.Transaction)
	require.NoError(t, err)
	require.Len(t, res, 2)
	for _, r := range res {
		require.NoError(t, r.Err)
		assert.Equal(t, "information: duplicate-plan: the check for a duplicate plan could not be made; the plan was stored. GET $data-quality lists duplicates", duplicates(r))
		got, err := f.st.Get(ctx, "EpisodeOfCare", r.Rec.ID)
		require.NoError(t, err, "the plan was stored")
		assert.Equal(t, r.Rec.Version, got.Version)
	}
	logs := f.logs.String()
	assert.Contains(t, logs, "the duplicate check could not read the store")
	assert.Contains(t, logs, `"level":"ERROR"`)
	assert.NotContains(t, logs, nhsA)
}

// BenchmarkDuplicateCheckOneChild: a transaction of 500 plans for one
// child, each needing the child's other plans (at most warningPlans of
// them) for its duplicate check. ns/op is one transaction.
//
//	go test ./handlers/registry -run '^$' -bench DuplicateCheckOneChild
func BenchmarkDuplicateCheckOneChild(b *testing.B) {
	f := newFixture(b)
	ctx := context.Background()
	changes := make([][]registry.Change, b.N)
	for i := range changes {
		for k := range 500 {
			ident := fmt.Sprintf("B%d-%d", i, k)
			changes[i] = append(changes[i], byIdent(f.planOf(b, ident, "active"), ident))
		}
	}
	b.ResetTimer()
	for i := range b.N {
		res, err := f.reg.Apply(ctx, la("LA001"), changes[i], registry.Transaction)
		if err != nil || duplicates(res[0]) == "" {
			b.Fatalf("%v %v", err, res[0].Warnings)
		}
	}
}

// BenchmarkDuplicateCheckManyPlans: 1,000 children with 20 plans each in
// one LA, and a transaction of one more plan for each; the check reads the
// 20,000 plans. peak-heap-MB is the most heap in use seen (every
// millisecond) while the transaction is applied: the bodies read are kept
// only as their facts, a few reads at a time.
//
//	go test ./handlers/registry -run '^$' -bench DuplicateCheckManyPlans
func BenchmarkDuplicateCheckManyPlans(b *testing.B) {
	f := newFixture(b)
	ctx := context.Background()
	children := make([]string, 1000)
	next := 999000000
	for i := range children {
		for ; fhir.NHSNumberCheckDigit(strconv.Itoa(next)) < 0; next++ {
		}
		children[i] = strconv.Itoa(next) + strconv.Itoa(fhir.NHSNumberCheckDigit(strconv.Itoa(next)))
		next++
	}
	unit := func(round int) []registry.Change {
		var out []registry.Change
		for i, nhs := range children {
			ident := fmt.Sprintf("M%d-%d", round, i)
			out = append(out, byIdent(f.planFor(b, nhs, ident, "active"), ident))
		}
		return out
	}
	for round := range 20 {
		if _, err := f.reg.Apply(ctx, la("LA001"), unit(round), registry.Transaction); err != nil {
			b.Fatal(err)
		}
	}
	units := make([][]registry.Change, b.N)
	for i := range units {
		units[i] = unit(100 + i)
	}
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	}()
	runtime.GC()
	b.ResetTimer()
	for i := range b.N {
		res, err := f.reg.Apply(ctx, la("LA001"), units[i], registry.Transaction)
		if err != nil || duplicates(res[0]) == "" {
			b.Fatalf("%v %v", err, res[0].Warnings)
		}
	}
	b.StopTimer()
	close(stop)
	<-done
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MB")
}
