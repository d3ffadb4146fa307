package parallel

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// TestEachRunsCallsAtOnce: with two cores, two calls of Each run at the
// same time (the first waits for the second to start), and every index is
// called exactly once.
func TestEachRunsCallsAtOnce(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	}
	const n = 64
	var calls [n]atomic.Int32
	started := make(chan struct{})
	var met atomic.Bool
	Each(n, 1, func(i int) {
		calls[i].Add(1)
		switch i {
		case 0:
			select {
			case <-started:
				met.Store(true)
			case <-time.After(5 * time.Second):
			}
		case 1:
			close(started)
		}
	})
	if !met.Load() {
		t.Fatal("the calls for 0 and 1 did not run at the same time")
	}
	for i := range calls {
		if c := calls[i].Load(); c != 1 {
			t.Fatalf("index %d called %d times", i, c)
		}
	}
}

// TestEachFewCallsStayOnTheCaller: fewer calls than two workers' share
// (a single write's) run in order on the caller's goroutine.
func TestEachFewCallsStayOnTheCaller(t *testing.T) {
	var order []int
	Each(8, 8, func(i int) { order = append(order, i) }) // no lock: one goroutine
	for i, v := range order {
		if v != i {
			t.Fatalf("order %v", order)
		}
	}
	if len(order) != 8 {
		t.Fatalf("%d calls", len(order))
	}
}

// TestEachRaisesAPanicInTheCaller: a panic in a worker reaches the
// caller's goroutine (where the recovery middleware answers 500), not the
// process.
func TestEachRaisesAPanicInTheCaller(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	}
	defer func() {
		if v := recover(); v != "boom" {
			t.Fatalf("recovered %v", v)
		}
	}()
	Each(100, 1, func(i int) {
		if i == 50 {
			panic("boom")
		}
	})
	t.Fatal("no panic")
}

// TestGoRunsBesideTheCaller: f runs while the caller works (each waits for
// the other), wait returns after f, and f's panic reaches wait's caller.
func TestGoRunsBesideTheCaller(t *testing.T) {
	started, met := make(chan struct{}), make(chan struct{})
	var done atomic.Bool
	wait := Go(func() {
		close(started)
		<-met
		done.Store(true)
	})
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("f did not start while the caller worked")
	}
	close(met)
	wait()
	if !done.Load() {
		t.Fatal("wait returned before f did")
	}

	wait = Go(func() { panic("boom") })
	defer func() {
		if v := recover(); v != "boom" {
			t.Fatalf("wait raised %v, not f's panic", v)
		}
	}()
	wait()
	t.Fatal("wait did not raise f's panic")
}
