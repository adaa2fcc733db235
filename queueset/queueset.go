// Package queueset turns one queue listing into Prometheus exposition text.
//
// A listing of 100k queues is 300k samples. Building prometheus.Metric values
// and sorting them in a registry costs seconds and hundreds of MB at that size,
// so QueueSet keeps each queue once, with its labels already escaped, and writes
// the per-queue families straight out in the negotiated format.
package queueset

import (
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
)

// maxBlockBytes is the most label storage allocated at a time. Fixed-size
// blocks instead of one growing slice: a 100k-queue listing would otherwise
// copy its labels over and over while growing (append grows large slices by
// 1.25x, so about 5x the final size gets allocated) and hold two copies at the
// peak. Blocks start at minBlockBytes and double, so small listings stay small.
const (
	minBlockBytes = 4 << 10
	maxBlockBytes = 64 << 10
	// Entries per block stay below 1<<entryBits (labels take at least
	// len(`name="",vhost=""} `) bytes each), so a (block, entry) pair fits the
	// index's 32-bit reference.
	entryBits  = 12
	maxEntries = 1<<entryBits - 1
	minLabels  = len(open) + len(mid) + len(end)
)

// Each queue's labels are stored as `name="…",vhost="…"} `, closing brace and
// space included, so the writer copies one run per sample.
const open, mid, end = `name="`, `",vhost="`, `"} `

type queueEntry struct {
	labelsEnd uint32 // end offset of this queue's escaped labels in its block
	has       queue.Presence
}

// block holds the escaped labels of consecutive queues and their entries.
// Both slices are allocated at full length up front and filled up to used and
// n: adding then only stores integers into the block, never slice headers,
// which would cost a GC write barrier per queue while a collection runs.
type block struct {
	labels  []byte // `name="…",vhost="…"} ` of each queue, back to back
	used    int
	entries []queueEntry
	// values holds each entry's values, stride (the number of fields) per
	// entry: only the chosen fields take room, so the default three cost
	// what they did before fields were selectable.
	values []int64
	hashes []uint32 // of each entry's labels, for Finish's duplicate search
	n      int
}

// ErrTooLarge is returned once a QueueSet would need more memory than its limit.
var ErrTooLarge = errors.New("queue listing needs more memory than the configured maximum")

// QueueSet is the compact result of one listing. It is immutable once the
// listing completed, so concurrent scrapes sharing one broker request may all
// write it out.
//
// Every queue is kept once: a second queue with the same vhost and name (after
// invalid UTF-8 became U+FFFD) would be a duplicate series, which Prometheus
// rejects, so it is dropped and counted (Duplicates).
type QueueSet struct {
	hostLabel []byte // `{host="…",`
	blocks    []*block
	cur       *block // the last block, being filled
	sealed    int    // label bytes in the blocks before cur
	n         int
	complete  int // queues with every count present
	perFamily [queue.MaxFields]int
	fields    queue.FieldSet
	stride    int            // len(fields)
	all       queue.Presence // every field of fields present
	required  queue.Presence // the fields a complete queue has (see MissingCounts)

	index    labelIndex
	cursor   uint32 // Set's guess of the next entry: sources list queues in the same order per family
	appendF  int    // 1 + the field of Set's first call: that family appends, later ones find
	scratch  []byte
	dups     int
	firstDup string

	limit, allocated int64 // bytes; limit 0 is unlimited
}

// NewQueueSet starts an empty set for the broker whose hostname is host. It
// allocates at most maxBytes for queues (0: no limit); beyond that Add and
// Set fail with ErrTooLarge, so a hostile listing cannot make memory grow
// faster than the body limit that bounds it.
func NewQueueSet(host string, maxBytes int64) *QueueSet {
	return NewQueueSetOf(host, maxBytes, queue.Fields())
}

// NewQueueSetOf is NewQueueSet for the chosen fields, numbered as in fields.
func NewQueueSetOf(host string, maxBytes int64, fields queue.FieldSet) *QueueSet {
	s := &QueueSet{limit: maxBytes, fields: fields, stride: len(fields), all: fields.All(), required: fields.Required()}
	s.hostLabel = append(s.hostLabel, `{host="`...)
	s.hostLabel = appendEscaped(s.hostLabel, []byte(host))
	s.hostLabel = append(s.hostLabel, `",`...)
	s.index.seed = maphash.MakeSeed()
	return s
}

// labelsRoom is the room escaping vhost and name may take: escaping doubles a
// byte at most, and an invalid UTF-8 byte becomes the 3-byte U+FFFD.
func labelsRoom(vhost, name []byte) int { return 3*(len(vhost)+len(name)) + minLabels }

// putLabels writes the stored label form of vhost and name to dst, which has
// labelsRoom bytes, and returns its length.
func putLabels(dst, vhost, name []byte) int {
	// Fixed-size array stores instead of copy: no memmove call for 3 to 9 bytes.
	*(*[len(open)]byte)(dst) = [len(open)]byte([]byte(open))
	n := len(open)
	n += escapeInto(dst[n:], name)
	*(*[len(mid)]byte)(dst[n:]) = [len(mid)]byte([]byte(mid))
	n += len(mid)
	n += escapeInto(dst[n:], vhost)
	*(*[len(end)]byte)(dst[n:]) = [len(end)]byte([]byte(end))
	return n + len(end)
}

// Add records one queue with all its counts (row by row, as the management
// listing gives them). vhost and name are copied; has tells which counts are
// present. Of queues with the same labels only the first is kept; Finish
// drops and counts the others.
func (s *QueueSet) Add(vhost, name []byte, counts *queue.Counts, has queue.Presence) error {
	need := labelsRoom(vhost, name)
	b, err := s.room(need)
	if err != nil {
		return err
	}
	n := putLabels(b.labels[b.used:b.used+need], vhost, name)
	return s.append(b, n, has&s.all, counts)
}

// append commits the entry whose n label bytes were just written at b.used.
// Once the index exists (Set), it keeps it current and drops a duplicate at
// once; before that, Finish finds duplicates in one pass, which costs a
// fraction of maintaining a growing index queue by queue.
func (s *QueueSet) append(b *block, n int, has queue.Presence, counts *queue.Counts) error {
	if s.index.slots != nil {
		labels := b.labels[b.used : b.used+n]
		if _, found := s.index.lookup(s, labels); found {
			s.countDuplicate(labels)
			return nil
		}
		if err := s.index.add(s, labels, s.ref(b)); err != nil {
			return err
		}
	}
	// Hashed here, while the labels just written are in the cache.
	b.hashes[b.n] = uint32(maphash.Bytes(s.index.seed, b.labels[b.used:b.used+n]))
	b.used += n
	b.entries[b.n] = queueEntry{labelsEnd: uint32(b.used), has: has}
	copy(b.values[b.n*s.stride:(b.n+1)*s.stride], counts[:s.stride])
	b.n++
	s.n++
	s.count(has, 1)
	return nil
}

// count adds sign times the queue's presence to the per-family totals.
func (s *QueueSet) count(has queue.Presence, sign int) {
	if has&s.required == s.required {
		s.complete += sign
	}
	for i := range s.fields {
		s.perFamily[i] += sign * (int(has>>i) & 1)
	}
}

func (s *QueueSet) countDuplicate(labels []byte) {
	s.dups++
	if s.firstDup == "" {
		s.firstDup = strings.TrimSuffix(string(labels), "} ")
	}
}

// Set records one count of one queue (column by column, as the plugin's
// families give them), creating the queue on its first count. It reports
// whether the queue already had that count, in which case the first value
// is kept.
func (s *QueueSet) Set(vhost, name []byte, field int, v int64) (dup bool, err error) {
	// Families list queues in the same order, so after the first family the
	// next queue is usually the one after the last match: one compare instead
	// of a hash lookup. The first family appends at the end, where the cursor
	// finds nothing; duplicates among those are left to Finish.
	if s.appendF == 0 {
		s.appendF = field + 1
	}
	e, found := s.entryAt(s.cursor)
	if !found && field+1 != s.appendF && s.n > 0 {
		// A later family starts again from the first queue; without this it
		// would append a second entry for each queue, which Finish drops
		// with its counts.
		s.cursor = 0
		e, found = s.entryAt(0)
	}
	switch {
	case !found && s.index.slots == nil:
		// A new queue at the end: escaped straight into the block.
		need := labelsRoom(vhost, name)
		b, err := s.room(need)
		if err != nil {
			return false, err
		}
		s.cursor = s.ref(b)
		if err := s.append(b, putLabels(b.labels[b.used:b.used+need], vhost, name), 0, &queue.Counts{}); err != nil {
			return false, err
		}
		e, _ = s.entryAt(s.cursor)
	case found && e.has&dropped == 0 && s.holds(s.cursor, vhost, name):
	default:
		if e, err = s.find(vhost, name); err != nil {
			return false, err
		}
	}
	ref := s.cursor
	s.cursor = s.next(s.cursor)
	if e.has.Has(field) {
		return true, nil
	}
	complete := e.has&s.required == s.required
	s.valuesOf(ref)[field] = v
	e.has |= queue.Bit(field)
	s.perFamily[field]++ // what count(old, -1) then count(new, 1) amounts to
	if !complete && e.has&s.required == s.required {
		s.complete++
	}
	return false, nil
}

// holds tells whether the entry ref has the labels of vhost and name,
// comparing them in place instead of escaping them first. Stored labels
// without a backslash hold no escape, so a byte-equal match with them is
// a match of the escaped labels too (a bare quote in the incoming names
// would sit where the stored labels have a backslash before it). A stored
// backslash, or names that differ only once escaped, take the exact path.
func (s *QueueSet) holds(ref uint32, vhost, name []byte) bool {
	stored := s.labelsOf(ref)
	v := len(open) + len(name) + len(mid)
	if len(stored) == v+len(vhost)+len(end) &&
		string(stored[len(open):len(open)+len(name)]) == string(name) &&
		string(stored[len(open)+len(name):v]) == mid &&
		string(stored[v:v+len(vhost)]) == string(vhost) &&
		bytes.IndexByte(stored, '\\') < 0 {
		return true
	}
	if !mayNeedEscape(name) && !mayNeedEscape(vhost) {
		return false // these escape to themselves: the compare above was exact
	}
	return string(stored) == string(s.escaped(vhost, name))
}

// escaped writes the stored form of vhost and name to the scratch buffer.
func (s *QueueSet) escaped(vhost, name []byte) []byte {
	need := labelsRoom(vhost, name)
	if cap(s.scratch) < need {
		s.scratch = make([]byte, need)
	}
	return s.scratch[:putLabels(s.scratch[:need], vhost, name)]
}

// find looks vhost and name up in the index (built on first use), adding the
// queue at the end when it is new, and moves the cursor there.
func (s *QueueSet) find(vhost, name []byte) (*queueEntry, error) {
	labels := s.escaped(vhost, name)
	if s.index.slots == nil {
		if err := s.buildIndex(); err != nil {
			return nil, err
		}
	}
	if ref, found := s.index.lookup(s, labels); found {
		s.cursor = ref
		e, _ := s.entryAt(ref)
		return e, nil
	}
	b, err := s.room(len(labels))
	if err != nil {
		return nil, err
	}
	s.cursor = s.ref(b)
	copy(b.labels[b.used:], labels)
	if err := s.append(b, len(labels), 0, &queue.Counts{}); err != nil {
		return nil, err
	}
	e, _ := s.entryAt(s.cursor)
	return e, nil
}

// Merge adds every queue of o (another member's part of the same listing)
// after those of s; Finish keeps the first of equal queues.
func (s *QueueSet) Merge(o *QueueSet) error {
	for _, ob := range o.blocks {
		start := uint32(0)
		for ei := range ob.entries[:ob.n] {
			e := &ob.entries[ei]
			labels := ob.labels[start:e.labelsEnd]
			start = e.labelsEnd
			if e.has&dropped != 0 {
				continue
			}
			b, err := s.room(len(labels))
			if err != nil {
				return err
			}
			copy(b.labels[b.used:], labels)
			var counts queue.Counts
			copy(counts[:], ob.values[ei*o.stride:(ei+1)*o.stride])
			if err := s.append(b, len(labels), e.has, &counts); err != nil {
				return err
			}
		}
	}
	s.dups += o.dups
	if s.firstDup == "" {
		s.firstDup = o.firstDup
	}
	return nil
}

// Finish drops the duplicates Add let through, keeping the first of each; call
// it once the listing is complete and before sharing the set.
func (s *QueueSet) Finish() error {
	if s.index.slots != nil {
		return nil // Set's index already turned duplicates away
	}
	s.dedupe()
	return nil
}

// dropped marks an entry Finish found to repeat an earlier one's labels.
const dropped queue.Presence = 1 << 7

var _ = [7 - queue.MaxFields]struct{}{} // Presence has room for the counts and dropped

// buildIndex indexes every entry, sized once for all of them, and drops
// those whose labels an earlier entry has. Set needs it only when a queue
// is not where the cursor expects it.
func (s *QueueSet) buildIndex() error {
	if err := s.index.init(s, s.n); err != nil {
		return err
	}
	for bi, b := range s.blocks {
		start := uint32(0)
		for ei := range b.entries[:b.n] {
			e := &b.entries[ei]
			labels := b.labels[start:e.labelsEnd]
			start = e.labelsEnd
			if _, found := s.index.lookup(s, labels); found {
				s.countDuplicate(labels)
				s.count(e.has, -1)
				s.n--
				e.has = dropped
				continue
			}
			if err := s.index.add(s, labels, uint32(bi)<<entryBits|uint32(ei)); err != nil {
				return err
			}
		}
	}
	return nil
}

// ref is the index reference of the entry about to be appended to b (the last block).
func (s *QueueSet) ref(b *block) uint32 {
	return uint32(len(s.blocks)-1)<<entryBits | uint32(b.n)
}

func (s *QueueSet) entryAt(ref uint32) (*queueEntry, bool) {
	bi, ei := int(ref>>entryBits), int(ref&maxEntries)
	if bi >= len(s.blocks) || ei >= s.blocks[bi].n {
		return nil, false
	}
	return &s.blocks[bi].entries[ei], true
}

// valuesOf returns the values of an existing entry.
func (s *QueueSet) valuesOf(ref uint32) []int64 {
	b := s.blocks[ref>>entryBits]
	ei := int(ref & maxEntries)
	return b.values[ei*s.stride : (ei+1)*s.stride]
}

// labelsOf returns the stored labels of an existing entry.
func (s *QueueSet) labelsOf(ref uint32) []byte {
	b := s.blocks[ref>>entryBits]
	ei := int(ref & maxEntries)
	start := uint32(0)
	if ei > 0 {
		start = b.entries[ei-1].labelsEnd
	}
	return b.labels[start:b.entries[ei].labelsEnd]
}

// next is the reference after ref in insertion order (possibly not yet existing).
func (s *QueueSet) next(ref uint32) uint32 {
	bi, ei := int(ref>>entryBits), int(ref&maxEntries)
	if ei+1 < s.blocks[bi].n || bi == len(s.blocks)-1 {
		return ref + 1
	}
	return uint32(bi+1) << entryBits
}

// room returns the block to append an entry with up to need label bytes to:
// the current one, or a new one when it is full.
func (s *QueueSet) room(need int) (*block, error) {
	if b := s.cur; b != nil && len(b.labels)-b.used >= need && b.n < len(b.entries) {
		return b, nil
	}
	return s.grow(need)
}

// grow starts a new block with room for at least need label bytes.
func (s *QueueSet) grow(need int) (*block, error) {
	size := minBlockBytes
	if s.cur != nil {
		size = min(2*len(s.cur.labels), maxBlockBytes)
		s.sealed += s.cur.used
	}
	// Size the entries from the label bytes per queue seen so far, so that
	// labels and entries of a block run out at about the same time.
	entries := size / 64
	if s.n > 0 {
		entries = size/max(s.sealed/s.n, minLabels) + 16
	}
	entries = min(entries, maxEntries)
	size = max(size, need)
	if len(s.blocks) >= 1<<(32-entryBits) {
		return nil, ErrTooLarge
	}
	if err := s.charge(int64(size) + int64(entries)*int64(entrySize+8*s.stride+4)); err != nil {
		return nil, err
	}
	b := &block{labels: make([]byte, size), entries: make([]queueEntry, entries), values: make([]int64, entries*s.stride), hashes: make([]uint32, entries)}
	s.blocks = append(s.blocks, b)
	s.cur = b
	return b, nil
}

const entrySize = 8 // labelsEnd, has and padding; the values are stride more

func (s *QueueSet) charge(n int64) error {
	s.allocated += n
	if s.limit > 0 && s.allocated > s.limit {
		return fmt.Errorf("%w (%d bytes)", ErrTooLarge, s.limit)
	}
	return nil
}

func (s *QueueSet) curUsed() int {
	if s.cur == nil {
		return 0
	}
	return s.cur.used
}

// Fields are the fields the set holds, numbered as Add and Set number them.
func (s *QueueSet) Fields() queue.FieldSet { return s.fields }

// Len is the number of queues recorded.
func (s *QueueSet) Len() int { return s.n }

// MissingCounts is the number of queues lacking at least one count the
// broker should always report (sparse fields, such as a head message
// timestamp, are often missing for good reason and not counted).
func (s *QueueSet) MissingCounts() int { return s.n - s.complete }

// Duplicates is the number of queues dropped because the set already had a
// queue with the same labels.
func (s *QueueSet) Duplicates() int { return s.dups }

// FirstDuplicate names the first dropped duplicate as `name="…",vhost="…"`
// (escaped), for a log line; "" when there was none.
func (s *QueueSet) FirstDuplicate() string { return s.firstDup }

// writeChunk is how much WriteTo assembles before handing it on. Each chunk
// costs net/http a chunk header and two write syscalls, each waking the
// scraper; in a test server, 512 KiB chunks took about a fifth less CPU to
// send 3.5 MB than 128 KiB ones. It also exceeds the web handler's bufio.Writer,
// so bufio passes chunks straight through instead of copying them again.
const writeChunk = 512 << 10

// WriteTo writes the per-queue families, each contiguous with HELP and TYPE
// once. Integer gauge lines are identical in the text format and OpenMetrics,
// so one writer serves both; the OpenMetrics `# EOF` line is the caller's to
// append after all families of the response.
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
	for i, f := range s.fields {
		if s.perFamily[i] == 0 {
			continue
		}
		out = appendHeader(out, &f)
		// `name{host="…",` is the same on every line of the family.
		prefix = append(append(prefix[:0], f.Metric...), s.hostLabel...)
		bit := queue.Bit(i)
		for _, b := range s.blocks {
			start := uint32(0)
			for ei, e := range b.entries[:b.n] {
				if e.has&bit != 0 {
					out = append(out, prefix...)
					out = append(out, b.labels[start:e.labelsEnd]...)
					if f.Float {
						out = appendFloat(out, math.Float64frombits(uint64(b.values[ei*s.stride+i])))
					} else {
						out = appendInt(out, b.values[ei*s.stride+i])
					}
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

// appendFloat formats v as the text format and OpenMetrics both read it:
// the shortest exact decimal, integers without a fraction.
func appendFloat(b []byte, v float64) []byte {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.AppendInt(b, int64(v), 10)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

// appendHeader writes HELP then TYPE, which both the text format and
// OpenMetrics accept; the HELP texts are constant and need no escaping.
func appendHeader(b []byte, f *queue.Field) []byte {
	b = append(b, "# HELP "...)
	b = append(b, f.Metric...)
	b = append(b, ' ')
	b = append(b, f.Help...)
	b = append(b, "\n# TYPE "...)
	b = append(b, f.Metric...)
	b = append(b, " gauge\n"...)
	return b
}
