package registry

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestHazard_ReusedHashMixesPatients: the security log's keyed hashes come
// from reused HMACs; each must be exactly the keyed hash of its own number,
// under concurrent use, so two patients' lines are never correlated (nor
// one patient's split) by a hash carried over from another call.
func TestHazard_ReusedHashMixesPatients(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	r := &Registry{subjectKey: key}
	want := func(s string) string {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(s))
		return hex.EncodeToString(m.Sum(nil)[:12])
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				s := fmt.Sprintf("94493%05d", (g*500+i)%997)
				if got := r.subjectHash(s); got != want(s) {
					assert.Fail(t, "wrong hash", "%s: %s, want %s", s, got, want(s))
					return
				}
			}
		}()
	}
	wg.Wait()
	assert.NotEqual(t, r.subjectHash("9449306753"), (&Registry{subjectKey: []byte("another key")}).subjectHash("9449306753"), "the hash is keyed")
}
