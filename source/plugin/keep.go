package plugin

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
)

// keepMemo remembers keep's answers for the first of our families, by
// position, so the other families (which list the same queues in the same
// order) ask keep only where the queue at that position differs. A filter
// of regular expressions costs about 200 ns a call, and 100k queues make
// 300k samples.
type keepMemo struct {
	field   int // family whose answers are kept; -1 until its first sample
	seed    maphash.Seed
	entries []memoEntry
}

type memoEntry struct {
	hash uint64 // of vhost and name; 0 where unknown
	keep bool
}

func (m *keepMemo) hash(vhost, name []byte) uint64 {
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(vhost)))
	var h maphash.Hash
	h.SetSeed(m.seed)
	h.Write(n[:])
	h.Write(vhost)
	h.Write(name)
	return h.Sum64() | 1
}

// kept asks keep about the queue at position pos of family field, or
// answers from memory. A 64-bit hash with a per-answer random seed tells
// whether the remembered queue is this one.
func (p *parser) kept(field, pos int, vhost, name []byte) bool {
	m := &p.memo
	if m.field < 0 {
		m.field, m.seed = field, maphash.MakeSeed()
	}
	h := m.hash(vhost, name)
	if field != m.field {
		if pos < len(m.entries) && m.entries[pos].hash == h {
			return m.entries[pos].keep
		}
		return p.keep(vhost, name)
	}
	k := p.keep(vhost, name)
	for len(m.entries) <= pos {
		m.entries = append(m.entries, memoEntry{})
	}
	m.entries[pos] = memoEntry{hash: h, keep: k}
	return k
}

// anySplitKept tells whether keep accepts any of the vhost/queue splits of
// an unescaped label: a label that reads several ways, or waits for the
// mode, matters to this scrape only if one of its readings is kept. What a
// tenant's queue names cost (held bytes, splits that read two ways) then
// counts only for scrapes whose filters may include them.
func (p *parser) anySplitKept(labels []byte) bool {
	if p.keep == nil {
		return true
	}
	for j := 0; j < len(labels); j++ {
		k := bytes.Index(labels[j:], []byte(labelsMid))
		if k < 0 {
			break
		}
		j += k
		if p.keep(labels[:j], labels[j+len(labelsMid):]) {
			return true
		}
	}
	return false
}

// drop counts a sample whose every reading the filters reject.
func (p *parser) drop() error {
	p.res.Rejected++
	return nil
}
