package management

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
	"strings"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
)

// Field numbers of the queue object keys besides the counts, which are numbered like
// queue.Fields.
const (
	fieldOther = -1
	fieldName  = queue.MaxFields
	fieldVhost = queue.MaxFields + 1
)

// queueKeys is the decoder's view of the per-queue field table: the keys it reads and the
// order in which the broker writes them.
type queueKeys struct {
	counts []string   // the key of each count, by field number
	order  []keyToken // every key, "name" and "vhost" included, sorted by bytes
	// The count keys of order that sort before "name", between "name" and "vhost", and after
	// "vhost": fastQueue matches the two constant keys inline and loops over these. A run with
	// a key too long for a token's words is long, and read by fastCountsSlow.
	runs [3][]keyToken
	long [3]bool
	// byLen[n] has bit i set when order[i].key is n bytes long: most keys of a full listing
	// are none of ours, and their length alone says so.
	byLen [maxKeyLen + 1]uint64
	// float has bit f set when count f is a Float field: fractions and
	// exponents allowed, the value kept as float64 bits.
	float uint64
}

const maxKeyLen = 64

// byLen's bits must number every key; this fails to compile when they cannot.
const _ = uint(64 - (queue.MaxFields + 2))

// keyToken is one key as fastQueue matches it: its separator (the '{' or ',' before it, filled in
// by the caller), the quoted key and the colon. A token of up to tokenWords words is also kept as
// words and masks, for comparison 8 bytes at a time with no loop: comparing strings of variable
// length calls memequal, which costs more than the rest of fastQueue's work on a count.
type keyToken struct {
	field        int
	bit          queue.Presence // of a count
	float        bool           // a Float field's token
	key          string
	s            string             // the token, with a NUL for the separator
	words, masks [tokenWords]uint64 // little-endian; masks select the token's bytes
}

const tokenWords = 4

func newKeyToken(field int, key string) keyToken {
	t := keyToken{field: field, key: key, s: "\x00\"" + key + `":`}
	if field < queue.MaxFields {
		t.bit = queue.Bit(field)
	}
	var b [8 * tokenWords]byte
	copy(b[:], t.s)
	for i := range tokenWords {
		t.words[i] = binary.LittleEndian.Uint64(b[8*i:])
		for j := range 8 {
			if 8*i+j < len(t.s) {
				t.masks[i] |= 0xff << (8 * j)
			}
		}
	}
	return t
}

// at reports whether b starts with the token after separator sep, the slow way.
func (t *keyToken) at(b []byte, sep byte) bool {
	return len(b) >= len(t.s) && b[0] == sep && string(b[1:len(t.s)]) == t.s[1:]
}

// brokerKeys are the keys of the default fields. Built once at start-up and never changed.
var brokerKeys = newQueueKeys(managementKeys())

func managementKeys() []string { return columnsOf(queue.Fields()) }

func columnsOf(fs queue.FieldSet) []string {
	var keys []string
	for _, f := range fs {
		keys = append(keys, f.Management)
	}
	return keys
}

// keysOf is the key table of the fields fs (the shared one for the default).
func keysOf(fs queue.FieldSet) *queueKeys {
	if fs == nil || fs.IsDefault() {
		return brokerKeys
	}
	k := newQueueKeys(columnsOf(fs))
	for i, f := range fs {
		if f.Float {
			k.float |= 1 << i
		}
	}
	mark := func(ts []keyToken) {
		for j := range ts {
			ts[j].float = ts[j].field < queue.MaxFields && k.float>>ts[j].field&1 != 0
		}
	}
	mark(k.order)
	for r := range k.runs {
		mark(k.runs[r])
	}
	return k
}

// newQueueKeys derives the key table from the count keys, indexed by field number. It panics
// on a table the decoder cannot serve, which is a programming error.
//
// The broker writes the keys of a queue object in byte order: the recorded listings and
// TestCanonicalListingTakesFastPath show it. fastQueue expects that order, whatever the keys,
// so a new count key sorting between two others keeps the listing on the fast path.
func newQueueKeys(counts []string) *queueKeys {
	if len(counts) > queue.MaxFields {
		panic(fmt.Sprintf("management: %d count keys, room for %d", len(counts), queue.MaxFields))
	}
	k := &queueKeys{counts: slices.Clone(counts)}
	add := func(field int, key string) {
		// Keys are matched in their JSON spelling, so they must need no escaping.
		if key == "" || len(key) > maxKeyLen || scanPlain([]byte(key)) != len(key) || slices.ContainsFunc(k.order, func(t keyToken) bool { return t.key == key }) {
			panic(fmt.Sprintf("management: queue key %q is empty, too long, needs JSON escaping or is repeated", key))
		}
		k.order = append(k.order, newKeyToken(field, key))
	}
	for i, key := range counts {
		add(i, key)
	}
	add(fieldName, "name")
	add(fieldVhost, "vhost")
	slices.SortFunc(k.order, func(a, b keyToken) int { return strings.Compare(a.key, b.key) })
	run := 0
	for i, t := range k.order {
		k.byLen[len(t.key)] |= 1 << i
		if t.field == fieldName || t.field == fieldVhost {
			run++
		} else {
			k.runs[run] = append(k.runs[run], t)
			k.long[run] = k.long[run] || len(t.s) > 8*tokenWords
		}
	}
	return k
}

// field says which field key names, or fieldOther.
func (k *queueKeys) field(key []byte) int {
	if len(key) > maxKeyLen {
		return fieldOther
	}
	for m := k.byLen[len(key)]; m != 0; m &= m - 1 {
		if t := &k.order[bits.TrailingZeros64(m)]; string(key) == t.key {
			return t.field
		}
	}
	return fieldOther
}

// name is the key of field f (a count, fieldName or fieldVhost).
func (k *queueKeys) name(f int) string {
	switch f {
	case fieldName:
		return "name"
	case fieldVhost:
		return "vhost"
	}
	return k.counts[f]
}
