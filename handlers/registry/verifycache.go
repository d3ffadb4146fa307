package registry

import (
	"hash/maphash"
	"sync"
)

// verifiedBodies remembers which bodies were found, by checkSubjects and
// checkAuditSubjects, to name exactly one patient: the same Flag is served
// over and over, and decoding it to check was a fifth of a silent search's
// CPU; an access history decodes the same 25 AuditEvents each time it is
// read (a third of its CPU). Plans and AuditEvents have a set each, so a
// stream of AuditEvents never pushes the Flags out. An entry is a
// keyed hash (random seed per process, so nobody can make a body collide
// with one checked) of the NHS number and the whole body: any change to the
// body is checked afresh. Only bodies that passed are kept; the set is
// bounded and emptied when full.
type verifiedBodies struct {
	seed maphash.Seed
	mu   sync.RWMutex
	seen map[uint64]struct{}
}

// maxVerified bounds the remembered bodies (16 bytes or so each).
const maxVerified = 1 << 16

func newVerifiedBodies() *verifiedBodies {
	return &verifiedBodies{seed: maphash.MakeSeed(), seen: make(map[uint64]struct{})}
}

func (v *verifiedBodies) key(nhs string, body []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(v.seed)
	h.WriteString(nhs)
	h.WriteByte(0)
	h.Write(body)
	return h.Sum64()
}

// aboutOnly is the package's aboutOnly, remembering bodies that passed.
func (v *verifiedBodies) aboutOnly(body []byte, nhs string) bool {
	k := v.key(nhs, body)
	v.mu.RLock()
	_, ok := v.seen[k]
	v.mu.RUnlock()
	if ok {
		return true
	}
	if !aboutOnly(body, nhs) {
		return false
	}
	v.mu.Lock()
	if len(v.seen) >= maxVerified {
		clear(v.seen)
	}
	v.seen[k] = struct{}{}
	v.mu.Unlock()
	return true
}
