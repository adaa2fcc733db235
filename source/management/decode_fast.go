package management

import (
	"encoding/binary"
	"math"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
)

// fastQueue decodes the queue object after its '{' when the whole object is in the window and
// spelled as the broker writes it: the keys of d.keys in their sorted order, any count absent,
// without whitespace, counts as plain integers or null, and no other keys. Name and Vhost then
// alias the window (or d.name and d.vhost, when they need unescaping), which stays put until fn
// returns. On any deviation it consumes nothing and returns false, so the general path decodes
// (or rejects) the same bytes and alone decides what is valid.
func (d *decoder) fastQueue() (bool, error) {
	if d.depth >= d.maxDepth {
		return false, nil
	}
	// b starts at the '{', so that each key is matched with the byte before it.
	b := d.buf[d.pos-1 : d.end]
	q := &d.q
	q.Counts, q.Has = queue.Counts{}, 0
	runs := &d.keys.runs
	i := 0
	if len(runs[0]) > 0 {
		i = d.fastCounts(b, 0, 0)
	}
	// "name" and "vhost" are constants, compared inline in pieces of at most 16 bytes, and their
	// values are plain strings unless a rare escape or UTF-8 sequence calls fastString.
	if i < 0 || len(b)-i < 9 || b[i] != separator(i) || string(b[i+1:i+9]) != `"name":"` {
		return false, nil
	}
	i += 9
	if n := scanPlain(b[i:]); i+n < len(b) && b[i+n] == '"' && n <= d.maxStr {
		q.Name, i = b[i:i+n], i+n+1
	} else if q.Name, i = d.fastString(b, i, &d.name); i < 0 {
		return false, nil
	}
	if len(runs[1]) > 0 {
		i = d.fastCounts(b, i, 1)
	}
	if i < 0 || len(b)-i < 10 || string(b[i:i+10]) != `,"vhost":"` {
		return false, nil
	}
	i += 10
	if n := scanPlain(b[i:]); i+n < len(b) && b[i+n] == '"' && n <= d.maxStr {
		q.Vhost, i = b[i:i+n], i+n+1
	} else if q.Vhost, i = d.fastString(b, i, &d.vhost); i < 0 {
		return false, nil
	}
	if len(runs[2]) > 0 {
		i = d.fastCounts(b, i, 2)
	}
	if i < 0 || i >= len(b) || b[i] != '}' {
		return false, nil
	}
	d.pos += i
	return true, d.fn(q)
}

// separator is the byte before the key at b[i] in fastQueue: the object's '{' or a ','.
func separator(i int) byte {
	if i == 0 {
		return '{'
	}
	return ','
}

// fastSpan is the input fastCounts reads at once: a token of tokenWords words and a count of up
// to 18 digits and the byte after it.
const fastSpan = 8*tokenWords + 20

// fastCounts reads, for fastQueue, the members at b[i:] (i >= 0, at the separator before the key)
// whose keys are those of count run r, in that order, each optional. It returns the index after
// them, or -1 when a count is not a plain integer or null. The loop makes no call (but to leave),
// so that its state stays in registers.
func (d *decoder) fastCounts(b []byte, i int, r int) int {
	run := d.keys.runs[r]
	if d.keys.long[r] {
		return d.fastCountsSlow(b, i, run)
	}
	q := &d.q
	sep := uint64(separator(i))
	for k := range run {
		t := &run[k]
		p := b[i:]
		if len(p) < fastSpan {
			return d.fastCountsSlow(b, i, run[k:])
		}
		p = p[:fastSpan]
		x := (binary.LittleEndian.Uint64(p[0:])^(t.words[0]|sep))&t.masks[0] |
			(binary.LittleEndian.Uint64(p[8:])^t.words[1])&t.masks[1]
		if len(t.s) > 16 {
			x |= (binary.LittleEndian.Uint64(p[16:]) ^ t.words[2]) & t.masks[2]
			if len(t.s) > 24 {
				x |= (binary.LittleEndian.Uint64(p[24:]) ^ t.words[3]) & t.masks[3]
			}
		}
		if x != 0 {
			continue // counts are optional
		}
		sep = ','
		v := p[len(t.s):][:20]
		n := uint64(v[0] - '0')
		if n > 9 {
			if string(v[:4]) != "null" {
				return -1
			}
			i += len(t.s) + 4
			continue
		}
		// Up to 18 digits always fit int64; a longer number, like a 0 before a digit, is left
		// to readCount and its errors.
		j := 1
		if n != 0 {
			for ; j < 19 && v[j]-'0' <= 9; j++ {
				n = n*10 + uint64(v[j]-'0')
			}
		}
		if j > 18 || v[j]-'0' <= 9 {
			return -1
		}
		q.Counts[t.field] = int64(n)
		if t.float {
			q.Counts[t.field] = int64(math.Float64bits(float64(n)))
		}
		q.Has |= t.bit
		i += len(t.s) + j
	}
	return i
}

// fastCountsSlow is fastCounts near the end of the window, and for long keys.
func (d *decoder) fastCountsSlow(b []byte, i int, run []keyToken) int {
	q := &d.q
	for k := range run {
		t := &run[k]
		if !t.at(b[i:], separator(i)) {
			continue
		}
		i += len(t.s)
		if len(b)-i >= 4 && string(b[i:i+4]) == "null" {
			i += 4
			continue
		}
		j := i
		var n uint64
		for ; j < len(b) && j-i < 19 && b[j]-'0' <= 9; j++ {
			n = n*10 + uint64(b[j]-'0')
		}
		if j == i || j-i > 18 || j == len(b) || b[j]-'0' <= 9 || b[i] == '0' && j-i > 1 {
			return -1
		}
		q.Counts[t.field] = int64(n)
		if t.float {
			q.Counts[t.field] = int64(math.Float64bits(float64(n)))
		}
		q.Has |= t.bit
		i = j
	}
	return i
}

// fastString decodes the string value at b[i:], after its opening quote, into *scratch for
// fastQueue, and returns it with the index after its closing quote, or -1 when the string does
// not end within b.
func (d *decoder) fastString(b []byte, i int, scratch *[]byte) ([]byte, int) {
	s, m, _, st := scanString((*scratch)[:0], b[i:], 0, d.maxStr, true, false)
	*scratch = s
	if st != strDone {
		return nil, -1
	}
	return s, i + m
}
