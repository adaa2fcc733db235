package queueset

import (
	"cmp"
	"math/bits"
	"slices"
)

// dedupe drops every entry whose labels an earlier entry has, keeping the
// first. Duplicates are rare, so it first finds the few entries that might
// be one: a bitset indexed by label hash, small enough to stay in the CPU
// caches, marks hashes seen twice. Only entries with such hashes are sorted
// and their labels compared. A hash table over all entries would cost a cache
// miss per queue, about three times as much at 100k queues.
func (s *QueueSet) dedupe() {
	if s.n < 2 {
		return
	}
	// About 16 bits per queue: a false alarm rate of a few percent.
	shift := 64 - min(max(bits.Len(uint(s.n))+4, 10), 24)
	seen := make([]uint64, 1<<(64-shift)/64)
	twice := make([]uint64, len(seen))
	for _, b := range s.blocks {
		for _, h := range b.hashes[:b.n] {
			i := uint64(h) * 0x9E3779B97F4A7C15 >> shift // spread 32 hash bits over the bitset
			w, m := i/64, uint64(1)<<(i%64)
			twice[w] |= seen[w] & m
			seen[w] |= m
		}
	}
	var candidates []uint64 // hash<<32 | ref, in insertion order
	for bi, b := range s.blocks {
		for ei, h := range b.hashes[:b.n] {
			i := uint64(h) * 0x9E3779B97F4A7C15 >> shift
			if twice[i/64]&(1<<(i%64)) != 0 {
				candidates = append(candidates, uint64(h)<<32|uint64(bi)<<entryBits|uint64(ei))
			}
		}
	}
	// Stable by hash: equal hashes stay in insertion order, so the first survives.
	slices.SortStableFunc(candidates, func(a, b uint64) int { return cmp.Compare(a>>32, b>>32) })
	for i := 0; i < len(candidates); {
		j := i + 1
		for j < len(candidates) && candidates[j]>>32 == candidates[i]>>32 {
			j++
		}
		for k := i + 1; k < j; k++ { // runs are almost always one long
			labels := s.labelsOf(uint32(candidates[k]))
			for m := i; m < k; m++ {
				if e, _ := s.entryAt(uint32(candidates[m])); e.has&dropped == 0 && string(s.labelsOf(uint32(candidates[m]))) == string(labels) {
					e, _ := s.entryAt(uint32(candidates[k]))
					s.countDuplicate(labels)
					s.count(e.has, -1)
					s.n--
					e.has = dropped
					break
				}
			}
		}
		i = j
	}
}
