package sqlite

import (
	"encoding/binary"
	"fmt"
	"time"

	"cpis/store"
)

// A subscription's numbered events are kept in pages: one row of sub_pages
// per feed page numbered, holding its run of numbers, first to last, and
// the events packed in one blob. Numbering writes one small row beside the
// audit's instead of a row (and an index entry) per event: the writer does
// it inside the audit's group commit, so its cost is paid on every
// clinician's audited read.
//
// The blob is a version byte, then per event, in number order: the access's
// sequence number and recorded time (Unix nanoseconds), each as a signed
// varint difference from the event before (from 0 for the first), and the
// access's id as a varint length and its bytes. A blob that does not hold
// exactly last-first+1 events is damaged, and read as such.

const subPageV1 = 1

// packSubEvents packs a run of events numbered first, first+1, ...
func packSubEvents(evs []store.SubEvent) ([]byte, error) {
	b := make([]byte, 1, 1+len(evs)*48)
	b[0] = subPageV1
	var seq, rec int64
	for i, e := range evs {
		if e.Number != evs[0].Number+int64(i) {
			return nil, fmt.Errorf("store/sqlite: events numbered %d then %d: a page holds one run of numbers", evs[0].Number+int64(i)-1, e.Number)
		}
		r := e.Recorded.UnixNano()
		b = binary.AppendVarint(b, e.Seq-seq)
		b = binary.AppendVarint(b, r-rec)
		b = binary.AppendUvarint(b, uint64(len(e.ID)))
		b = append(b, e.ID...)
		seq, rec = e.Seq, r
	}
	return b, nil
}

// unpackSubEvents reads the events of a page numbered first to last, and
// appends those numbered from `from` on to dst.
func unpackSubEvents(dst []store.SubEvent, blob []byte, first, last, from int64) ([]store.SubEvent, error) {
	damaged := func(what string) error {
		return fmt.Errorf("%w: a subscription's events %d to %d: %s", errDamaged, first, last, what)
	}
	if len(blob) == 0 || blob[0] != subPageV1 || last < first {
		return dst, damaged("not a page of events")
	}
	b := blob[1:]
	var seq, rec int64
	for n := first; n <= last; n++ {
		ds, k := binary.Varint(b)
		if k <= 0 {
			return dst, damaged("cut short")
		}
		b = b[k:]
		dr, k := binary.Varint(b)
		if k <= 0 {
			return dst, damaged("cut short")
		}
		b = b[k:]
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return dst, damaged("cut short")
		}
		id := b[k : k+int(l)]
		b = b[k+int(l):]
		seq, rec = seq+ds, rec+dr
		if n >= from {
			dst = append(dst, store.SubEvent{Number: n, Seq: seq, Recorded: time.Unix(0, rec).UTC(), ID: string(id)})
		}
	}
	if len(b) != 0 {
		return dst, damaged("more events than its numbers")
	}
	return dst, nil
}
