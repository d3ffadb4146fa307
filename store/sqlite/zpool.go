package sqlite

import (
	"sync"

	"github.com/klauspost/compress/zstd"
)

// zpool keeps Zstandard states packing and unpacking against one raw
// dictionary, each state used by one caller at a time; the pool makes one
// more when all are in use. The library's own sharing (one Encoder or
// Decoder holding a state for each core) makes a caller wait when every
// state is in use: under load a packing handler parked on it, and once
// woken waited again for a core, behind every handler runnable meanwhile
// (BenchmarkPackBodyConcurrent).
//
// The encoder's window is 64 KB, not its 8 MB default: a body is a few
// kilobytes, and a state's buffers are sized by the window. A state is
// about 1 MB and takes 0.2 ms to make; the pool holds as many as were
// packing at once, about one a core, and makes them again after the
// collector has dropped them. A frame names its dictionary by id: one
// packed against another dictionary does not unpack, and one that claims
// more than maxPackedBody is refused rather than given the memory.
type zpool struct{ enc, dec sync.Pool }

func newZPool(id uint32, dict []byte) *zpool {
	z := &zpool{}
	z.enc.New = func() any {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderDictRaw(id, dict),
			zstd.WithSingleSegment(true), zstd.WithWindowSize(1<<16), zstd.WithEncoderConcurrency(1))
		if err != nil {
			panic(err)
		}
		return enc
	}
	z.dec.New = func() any {
		dec, err := zstd.NewReader(nil, zstd.WithDecoderDictRaw(id, dict), zstd.WithDecoderMaxMemory(maxPackedBody),
			zstd.WithDecoderConcurrency(1))
		if err != nil {
			panic(err)
		}
		return dec
	}
	return z
}

// pack appends b's frame to dst.
func (z *zpool) pack(dst, b []byte) []byte {
	enc := z.enc.Get().(*zstd.Encoder)
	dst = enc.EncodeAll(b, dst)
	z.enc.Put(enc)
	return dst
}

// unpack returns the body of frame b.
func (z *zpool) unpack(b []byte) ([]byte, error) {
	dec := z.dec.Get().(*zstd.Decoder)
	body, err := dec.DecodeAll(b, nil)
	z.dec.Put(dec)
	return body, err
}
