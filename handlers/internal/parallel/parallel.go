// Package parallel runs independent calls of one request on every core:
// a transaction's entry checks (handlers) and its store reads, record
// building and warnings (registry), and one call beside the caller's own
// work (a unit's duplicate check beside its commit).
package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Each calls f(i) for every i in [0, n) on up to GOMAXPROCS goroutines,
// each worker taking at least minPer calls (fewer calls than that run in
// order on the caller's goroutine). f writes only its own i's results, so
// their order is the entries' order whatever order the calls run in. A
// panic in f stops the other workers taking more and is raised again in
// the caller's goroutine, where the recovery middleware answers it.
func Each(n, minPer int, f func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n/max(minPer, 1))
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

// panicValue carries a recovered value to the caller's goroutine.
type panicValue struct{ v any }

// Go calls f on a goroutine of its own, beside the caller's work. wait
// returns once f has returned, and raises a panic of f's again in the
// caller's goroutine, where the recovery middleware answers it. wait must
// be called once.
func Go(f func()) (wait func()) {
	done := make(chan *panicValue, 1)
	go func() {
		defer func() {
			if v := recover(); v != nil {
				done <- &panicValue{v}
				return
			}
			done <- nil
		}()
		f()
	}()
	return func() {
		if p := <-done; p != nil {
			panic(p.v)
		}
	}
}
