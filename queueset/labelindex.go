package queueset

import "hash/maphash"

// labelIndex finds a queue by its stored labels: open addressing over
// references into the blocks, so the labels are not stored twice. A slot is
// the label hash's low 32 bits (which also pick the slot) above ref+1; 0 is
// an empty slot.
type labelIndex struct {
	seed  maphash.Seed
	slots []uint64
	n     int
}

const minIndexSlots = 256

func (x *labelIndex) hash(labels []byte) uint32 { return uint32(maphash.Bytes(x.seed, labels)) }

// lookup returns the reference of the entry whose labels are labels.
func (x *labelIndex) lookup(s *QueueSet, labels []byte) (uint32, bool) {
	if x.n == 0 {
		return 0, false
	}
	h := x.hash(labels)
	mask := uint32(len(x.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		slot := x.slots[i]
		if slot == 0 {
			return 0, false
		}
		if uint32(slot>>32) == h {
			ref := uint32(slot) - 1
			if string(s.labelsOf(ref)) == string(labels) {
				return ref, true
			}
		}
	}
}

// init makes room for n entries at once (and more later, if Set adds queues).
func (x *labelIndex) init(s *QueueSet, n int) error {
	size := minIndexSlots
	for 3*size < 4*(n+1) {
		size *= 2
	}
	if err := s.charge(8 * int64(size)); err != nil {
		return err
	}
	x.slots = make([]uint64, size)
	return nil
}

// add stores ref under labels, which are not in the index yet.
func (x *labelIndex) add(s *QueueSet, labels []byte, ref uint32) error {
	if 4*(x.n+1) > 3*len(x.slots) {
		size := 2 * len(x.slots)
		if err := s.charge(8 * int64(size)); err != nil {
			return err
		}
		old := x.slots
		x.slots = make([]uint64, size)
		for _, slot := range old {
			if slot != 0 {
				x.put(slot)
			}
		}
	}
	x.put(uint64(x.hash(labels))<<32 | uint64(ref+1))
	x.n++
	return nil
}

func (x *labelIndex) put(slot uint64) {
	mask := uint32(len(x.slots) - 1)
	i := uint32(slot>>32) & mask
	for x.slots[i] != 0 {
		i = (i + 1) & mask
	}
	x.slots[i] = slot
}
