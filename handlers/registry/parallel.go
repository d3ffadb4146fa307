package registry

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// each calls f(i) for every i in [0, n) on up to GOMAXPROCS goroutines:
// the per-entry store reads and record building of a transaction are
// independent of each other, and most of a large upload's time after its
// checks. f writes only its own i's results, so their order is the
// entries' order whatever order the calls run in. A panic in f is raised
// again in the caller's goroutine, where the recovery middleware answers
// it.
func each(n int, f func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n/minPerWorker)
	if workers <= 1 {
		for i := 0; i < n; i++ {
			f(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	var panicked atomic.Pointer[panicValue]
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if v := recover(); v != nil {
					panicked.CompareAndSwap(nil, &panicValue{v})
				}
			}()
			for i := int(next.Add(1) - 1); i < n && panicked.Load() == nil; i = int(next.Add(1) - 1) {
				f(i)
			}
		}()
	}
	wg.Wait()
	if p := panicked.Load(); p != nil {
		panic(p.v)
	}
}

// minPerWorker is the fewest calls worth a goroutine of their own: a
// single write, or a small batch, stays on the request's goroutine.
const minPerWorker = 8

// panicValue carries a recovered value to the caller's goroutine.
type panicValue struct{ v any }
