package store

import (
	"fmt"
	"sync/atomic"
)

// Failure is a backend's "failed for good" state: once set (its database
// was deleted, replaced or dropped under it), every call answers its error,
// an ErrUnavailable. The zero value has not failed. Safe for concurrent use.
type Failure struct{ err atomic.Pointer[error] }

// Err is the failure, or nil.
func (f *Failure) Err() error {
	if v := f.err.Load(); v != nil {
		return *v
	}
	return nil
}

// Set fails for why (prefix names the backend) and reports whether this
// call set it: only the first failure is kept, so the caller logs it once.
func (f *Failure) Set(prefix, why string) bool {
	err := fmt.Errorf("%s: %w: %s; restart the server once the cause is understood", prefix, ErrUnavailable, why)
	return f.err.CompareAndSwap(nil, &err)
}
