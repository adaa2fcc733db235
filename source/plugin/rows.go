package plugin

import (
	"fmt"
	"slices"
	"sync"
)

// rowSet remembers the label texts of each block of ours, as seeded 64-bit
// hashes by position, so that a label set listed twice in one family is
// refused whatever the sink can tell (doc.go, rule 4). A QueueSet matches a
// later family's rows to the first family's by position, so a duplicate
// present in every family reaches it as two queues each time and is never
// reported. One label text is one vhost and name in every mode (escaping is
// one-to-one, a raw text is vhost, separator, name), so equal texts are the
// test. A false match needs two texts with equal hashes under a per-answer
// random seed: it refuses the answer, never misreads it.
//
// The check runs once the answer is read: the first block's hashes go
// through an open-addressing table in one tight loop (looking each row up
// while parsing cost a third of the parse at 100k queues: the table left
// the cache between rows), and a block that lists the same rows in the
// same order, as the plugin writes them, is compared with it position by
// position.
type rowSet struct {
	*rowBuffers
}

// rowBuffers are a rowSet's slices, reused by the next answer: growing them
// anew for each 100k-queue answer allocated 8 MB.
type rowBuffers struct {
	blocks [][]uint64 // per family index: row hashes by position
	slots  []uint64   // the table: 0 empty, a stored hash has its low bit set
}

// maxPooledRows: the slices of larger answers (over 2M queues) are not kept
// for the next one.
const maxPooledRows = 1 << 21

var rowBuffersPool = sync.Pool{New: func() any { return new(rowBuffers) }}

// add records the next row of family f's block.
func (r *rowSet) add(f int, h uint64) {
	if r.rowBuffers == nil {
		r.rowBuffers = rowBuffersPool.Get().(*rowBuffers)
	}
	for len(r.blocks) <= f {
		r.blocks = append(r.blocks, nil)
	}
	r.blocks[f] = append(r.blocks[f], h)
}

// release hands the slices back for the next answer.
func (r *rowSet) release() {
	b := r.rowBuffers
	if b == nil {
		return
	}
	r.rowBuffers = nil
	for _, rows := range b.blocks {
		if len(rows) > maxPooledRows {
			return
		}
	}
	for i := range b.blocks {
		b.blocks[i] = b.blocks[i][:0]
	}
	rowBuffersPool.Put(b)
}

// repeated finds a block that lists one label text twice: its family index
// and the two rows (from 0); ok is false if none does.
func (r *rowSet) repeated() (f, first, second int, ok bool) {
	if r.rowBuffers == nil {
		return 0, 0, 0, false
	}
	var checked []uint64 // a block found free of repeats
	for f, rows := range r.blocks {
		if len(rows) == 0 || checked != nil && slices.Equal(rows, checked) {
			continue
		}
		if i, j, ok := r.repeatIn(rows); ok {
			return f, i, j, true
		}
		checked = rows
	}
	return 0, 0, 0, false
}

// repeatIn looks for two equal hashes in rows.
func (r *rowSet) repeatIn(rows []uint64) (first, second int, ok bool) {
	size := 1024
	for size < 2*len(rows) {
		size *= 2
	}
	if cap(r.slots) < size {
		r.slots = make([]uint64, size)
	}
	r.slots = r.slots[:size]
	clear(r.slots)
	mask := uint64(size - 1)
	for j, h := range rows {
		h |= 1
		for i := (h >> 1) & mask; ; i = (i + 1) & mask {
			if r.slots[i] == 0 {
				r.slots[i] = h
				break
			}
			if r.slots[i] == h {
				return slices.IndexFunc(rows, func(x uint64) bool { return x|1 == h }), j, true
			}
		}
	}
	return 0, 0, false
}

// checkRepeats refuses an answer in which a family lists a label set twice.
func (p *parser) checkRepeats() error {
	if f, i, j, ok := p.blockRows.repeated(); ok {
		return fmt.Errorf("%w: a label set is listed twice in family %s (its samples %d and %d)", ErrAmbiguous, p.fams[f].name, i+1, j+1)
	}
	return nil
}
