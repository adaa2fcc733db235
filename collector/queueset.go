// Package collector turns one queue listing into Prometheus exposition text.
//
// A listing of 100k queues is 300k samples. Building prometheus.Metric values
// and sorting them in a registry costs seconds and hundreds of MB at that size,
// so QueueSet keeps each queue once, with its labels already escaped, and writes
// the three families straight out in the negotiated format.
package collector

import (
	"encoding/binary"
	"io"
	"slices"
	"strconv"
)

// Count presence bits, matching management.Has*.
const (
	HasMessages uint8 = 1 << iota
	HasMessagesReady
	HasMessagesUnacknowledged
	hasAll = HasMessages | HasMessagesReady | HasMessagesUnacknowledged
)

// Family describes one per-queue metric family.
type Family struct {
	Name string
	Help string
	bit  uint8
}

// Families are the per-queue gauges, in the order they are written.
var Families = [3]Family{
	{"rabbitmq_individual_queue_messages", "Messages in the queue (ready plus unacknowledged), as reported by the management API.", HasMessages},
	{"rabbitmq_individual_queue_messages_ready", "Messages in the queue ready to be delivered to consumers.", HasMessagesReady},
	{"rabbitmq_individual_queue_messages_unacknowledged", "Messages in the queue delivered to consumers but not yet acknowledged.", HasMessagesUnacknowledged},
}

// maxBlockBytes is the most label storage allocated at a time. Fixed-size
// blocks instead of one growing slice: a 100k-queue listing would otherwise
// copy its labels over and over while growing (append grows large slices by
// 1.25x, so about 5x the final size gets allocated) and hold two copies at the
// peak. Blocks start at minBlockBytes and double, so small listings stay small.
const (
	minBlockBytes = 4 << 10
	maxBlockBytes = 64 << 10
)

type queueEntry struct {
	labelsEnd uint32 // end offset of this queue's escaped labels in its block
	has       uint8
	values    [3]int64
}

// block holds the escaped labels of consecutive queues and their entries.
// Both slices are allocated at full length up front and filled up to used and
// n: Add then only stores integers into the block, never slice headers, which
// would cost a GC write barrier per queue while a collection runs.
type block struct {
	labels  []byte // `name="…",vhost="…"} ` of each queue, back to back
	used    int
	entries []queueEntry
	n       int
}

// QueueSet is the compact result of one listing. It is immutable once the
// listing completed, so concurrent scrapes sharing one broker request may all
// write it out.
type QueueSet struct {
	hostLabel []byte // `{host="…",`
	blocks    []*block
	cur       *block // the last block, being filled
	sealed    int    // label bytes in the blocks before cur
	n         int
	missing   int
	perFamily [3]int // samples of each family, so WriteTo and Samples need no scans
}

// NewQueueSet starts an empty set for the broker whose hostname is host.
func NewQueueSet(host string) *QueueSet {
	s := &QueueSet{}
	s.hostLabel = append(s.hostLabel, `{host="`...)
	s.hostLabel = appendEscaped(s.hostLabel, []byte(host))
	s.hostLabel = append(s.hostLabel, `",`...)
	return s
}

// Add records one queue. vhost and name are copied; has tells which of
// messages, ready and unacked are present (absent counts get no sample).
func (s *QueueSet) Add(vhost, name []byte, messages, ready, unacked int64, has uint8) {
	// The closing brace and space are stored too: WriteTo then copies one run per sample.
	const open, mid, end = `name="`, `",vhost="`, `"} `
	// Escaping at most doubles a value, so this much room is always enough.
	need := 2*(len(vhost)+len(name)) + len(open) + len(mid) + len(end)
	b := s.cur
	if b == nil || len(b.labels)-b.used < need || b.n == len(b.entries) {
		b = s.grow(need)
	}
	dst := b.labels[b.used : b.used+need]
	// Fixed-size array stores instead of copy: no memmove call for 3 to 9 bytes.
	*(*[len(open)]byte)(dst) = [len(open)]byte([]byte(open))
	n := len(open)
	n += escapeInto(dst[n:], name)
	*(*[len(mid)]byte)(dst[n:]) = [len(mid)]byte([]byte(mid))
	n += len(mid)
	n += escapeInto(dst[n:], vhost)
	*(*[len(end)]byte)(dst[n:]) = [len(end)]byte([]byte(end))
	b.used += n + len(end)
	has &= hasAll
	b.entries[b.n] = queueEntry{labelsEnd: uint32(b.used), has: has, values: [3]int64{messages, ready, unacked}}
	b.n++
	s.n++
	if has != hasAll {
		s.missing++
	}
	s.perFamily[0] += int(has & HasMessages)
	s.perFamily[1] += int(has&HasMessagesReady) >> 1
	s.perFamily[2] += int(has&HasMessagesUnacknowledged) >> 2
}

// grow starts a new block with room for at least need label bytes.
func (s *QueueSet) grow(need int) *block {
	size := minBlockBytes
	if s.cur != nil {
		size = min(2*len(s.cur.labels), maxBlockBytes)
		s.sealed += s.cur.used
	}
	// Size the entries from the label bytes per queue seen so far, so that
	// labels and entries of a block run out at about the same time.
	entries := size / 64
	if s.n > 0 {
		entries = size/max(s.sealed/s.n, 1) + 16
	}
	b := &block{labels: make([]byte, max(size, need)), entries: make([]queueEntry, entries)}
	s.blocks = append(s.blocks, b)
	s.cur = b
	return b
}

func (s *QueueSet) curUsed() int {
	if s.cur == nil {
		return 0
	}
	return s.cur.used
}

// Len is the number of queues recorded.
func (s *QueueSet) Len() int { return s.n }

// MissingCounts is the number of queues lacking at least one of the three counts.
func (s *QueueSet) MissingCounts() int { return s.missing }

// Samples is the number of samples WriteTo emits.
func (s *QueueSet) Samples() int { return s.perFamily[0] + s.perFamily[1] + s.perFamily[2] }

// writeChunk is how much WriteTo assembles before handing it on. Each chunk
// costs net/http a chunk header and two write syscalls, each waking the
// scraper; in a test server, 512 KiB chunks took about a fifth less CPU to
// send 3.5 MB than 128 KiB ones. It also exceeds the prober's bufio.Writer,
// so bufio passes chunks straight through instead of copying them again.
const writeChunk = 512 << 10

// WriteTo writes the three families, each contiguous with HELP and TYPE once.
// Integer gauge lines are identical in the text format and OpenMetrics, so one
// writer serves both; the OpenMetrics `# EOF` line is the caller's to append
// after all families of the response.
func (s *QueueSet) WriteTo(w io.Writer) (int64, error) {
	var written int64
	// One buffer per call (concurrent scrapes of a shared listing each need
	// their own); small listings get a small one.
	out := make([]byte, 0, min(writeChunk, 3*(s.sealed+s.curUsed())+4096)+4096)
	flush := func() error {
		n, err := w.Write(out)
		written += int64(n)
		out = out[:0]
		return err
	}
	var prefix []byte
	for i, f := range Families {
		if s.perFamily[i] == 0 {
			continue
		}
		out = appendHeader(out, f)
		// `name{host="…",` is the same on every line of the family.
		prefix = append(append(prefix[:0], f.Name...), s.hostLabel...)
		for _, b := range s.blocks {
			start := uint32(0)
			for _, e := range b.entries[:b.n] {
				if e.has&f.bit != 0 {
					out = append(out, prefix...)
					out = append(out, b.labels[start:e.labelsEnd]...)
					out = appendInt(out, e.values[i])
					out = append(out, '\n')
					if len(out) >= writeChunk {
						if err := flush(); err != nil {
							return written, err
						}
					}
				}
				start = e.labelsEnd
			}
		}
	}
	if len(out) > 0 {
		if err := flush(); err != nil {
			return written, err
		}
	}
	return written, nil
}

// appendInt formats v like strconv.AppendInt. Most queues hold few messages,
// and doing those inline takes a call and strconv's checks off every sample.
func appendInt(b []byte, v int64) []byte {
	if uint64(v) < 10 {
		return append(b, byte('0'+v))
	}
	if uint64(v) < 100 {
		return append(b, byte('0'+v/10), byte('0'+v%10))
	}
	return strconv.AppendInt(b, v, 10)
}

// appendHeader writes HELP then TYPE, which both the text format and
// OpenMetrics accept; the HELP texts are constant and need no escaping.
func appendHeader(b []byte, f Family) []byte {
	b = append(b, "# HELP "...)
	b = append(b, f.Name...)
	b = append(b, ' ')
	b = append(b, f.Help...)
	b = append(b, "\n# TYPE "...)
	b = append(b, f.Name...)
	b = append(b, " gauge\n"...)
	return b
}

// appendEscaped appends v escaped as a label value (see escapeInto).
func appendEscaped(b, v []byte) []byte {
	n := len(b)
	b = slices.Grow(b, 2*len(v))[:n+2*len(v)]
	return b[:n+escapeInto(b[n:], v)]
}

// escapeInto writes v escaped as both exposition formats require (backslash,
// double quote and line feed) to dst, which must hold 2*len(v) bytes, and
// returns the bytes written. Everything else is valid UTF-8 as is (the decoder
// already replaced invalid bytes with U+FFFD).
func escapeInto(dst, v []byte) int {
	// Queue and vhost names almost never contain the three bytes: check the
	// whole value a word at a time and copy it in one go.
	if !mayNeedEscape(v) {
		return copy(dst, v)
	}
	n := 0
	for _, c := range v {
		switch c {
		case '\\', '"':
			dst[n], dst[n+1] = '\\', c
			n += 2
		case '\n':
			dst[n], dst[n+1] = '\\', 'n'
			n += 2
		default:
			dst[n] = c
			n++
		}
	}
	return n
}

// mayNeedEscape is false when v certainly holds no backslash, double quote or
// line feed. It reads v as 64-bit words (the last one overlapping, short
// values packed into one) and flags bytes below '#' (which covers '"', '\n'
// and a few rare ones such as space) or equal to '\\': two word tests where an
// exact check needs three, and a false alarm only costs the byte-wise path.
func mayNeedEscape(v []byte) bool {
	n := len(v)
	switch {
	case n >= 8:
		for i := 0; i+8 <= n; i += 8 {
			if wordMayNeedEscape(binary.LittleEndian.Uint64(v[i:])) {
				return true
			}
		}
		return wordMayNeedEscape(binary.LittleEndian.Uint64(v[n-8:]))
	case n >= 4:
		return wordMayNeedEscape(uint64(binary.LittleEndian.Uint32(v)) | uint64(binary.LittleEndian.Uint32(v[n-4:]))<<32)
	case n > 0:
		// Bytes 3-7 are 'a', which never alarms.
		return wordMayNeedEscape(uint64(v[0]) | uint64(v[n/2])<<8 | uint64(v[n-1])<<16 | 0x6161616161000000)
	}
	return false
}

// wordMayNeedEscape applies the classic SWAR tests "some byte < '#'" and
// "some byte == '\\'" (zero byte in x XOR backslashes) to the 8 bytes of x.
// Bytes >= 0x80 never alarm; borrows may flag bytes above a real hit only.
func wordMayNeedEscape(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	y := x ^ ('\\' * ones)
	return ((x-'#'*ones)&^x|(y-ones)&^y)&highs != 0
}
