package management

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
)

// TestCanonicalListingTakesFastPath: the listings a broker returned for the exporter's request
// decode through fastQueue alone. Were the broker's key order not the sorted one fastQueue
// expects, every queue would silently take the general path, about 2x slower, and only this
// test would say so.
func TestCanonicalListingTakesFastPath(t *testing.T) {
	files := testdataFiles(t)
	// A 3-node cluster's listings, with queue names that need escaping or are not valid UTF-8.
	for _, name := range []string{"cluster-3.10.8-queues.json", "cluster-3.10.8-rabbit4-stopped-queues.json"} {
		b, err := os.ReadFile(filepath.Join("..", "plugin", "testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = b
	}
	for _, name := range []string{
		"queues-3.10.8-lean.json",                    // classic, quorum, stream (no counts), escaped name
		"queues-3.10.8-columns-stats.json",           // the same columns, statistics enabled
		"queues-4.x-lean.json",                       // UTF-8 vhost, queues without counts
		"queues-4.x-paged.json",                      // a page: refused, but its items are canonical too
		"cluster-3.10.8-queues.json",                 // escapes, NUL, invalid UTF-8, emoji
		"cluster-3.10.8-rabbit4-stopped-queues.json", // queues of a stopped member: no counts
	} {
		t.Run(name, func(t *testing.T) {
			var stats decodeStats
			got, err := decodeWith(bytes.NewReader(files[name]), DecodeLimits{}, brokerKeys, &stats)
			if err != nil && !strings.Contains(name, "paged") {
				t.Fatal(err)
			}
			if stats.queues == 0 || stats.slow != 0 {
				t.Errorf("%d of %d queues took the general path", stats.slow, stats.queues)
			}
			if want, refErr := referenceDecode(files[name]); err == nil && (refErr != nil || !reflect.DeepEqual(got, want)) {
				t.Errorf("differs from the reference (%v)", refErr)
			}
		})
	}
	// Control: the default (full) listing is not in that form, and the counter sees it.
	var stats decodeStats
	if _, err := decodeWith(bytes.NewReader(files["queues-3.10.8-default.json"]), DecodeLimits{}, brokerKeys, &stats); err != nil {
		t.Fatal(err)
	}
	if stats.queues != 4 || stats.slow != 4 {
		t.Errorf("full listing: %d of %d queues took the general path, want all", stats.slow, stats.queues)
	}
}

// TestNewFieldKeepsFastPath: fastQueue follows whatever the field table says, so a new count
// keeps canonical listings on the fast path wherever its key sorts: between two counts (the trap
// of the hand-written decoder: "messages_dlx" between "messages" and "messages_ready"), around
// "name" and "vhost", first, last, or longer than a token's words.
func TestNewFieldKeepsFastPath(t *testing.T) {
	tables := [][]string{
		managementKeys(),
		{"messages", "messages_dlx", "messages_ready"},
		{"messages_ready", "messages_dlx", "messages"},
		{"zz_last", "o_between", "a_first"},
		{"name_x", "nam", "vhosts"},
		{"m", "messages_unacknowledged_ram_bytes_persistent", "w"},
		{"messages"},
		{},
	}
	for _, counts := range tables {
		t.Run(strings.Join(counts, ","), func(t *testing.T) {
			keys := newQueueKeys(counts)
			rnd := rand.New(rand.NewPCG(1, uint64(len(counts))))
			data := canonicalListing(keys, 3000, func(i int) (string, string, queue.Counts, queue.Presence) {
				return randomQueue(rnd, i, len(counts))
			})
			var stats decodeStats
			got, err := decodeWith(bytes.NewReader(data), DecodeLimits{}, keys, &stats)
			if err != nil {
				t.Fatal(err)
			}
			want, err := referenceDecodeKeys(data, counts)
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("differs from the reference (%v)", err)
			}
			// A queue cut by a refill of the 64 KiB window, whose end fastQueue cannot see,
			// takes the general path.
			if limit := len(data)/(readBufferSize/2) + 1; stats.queues != 3000 || stats.slow > limit {
				t.Errorf("%d of %d queues took the general path, want at most %d", stats.slow, stats.queues, limit)
			}
		})
	}
}

// randomQueue makes queue i with nfields counts of varied widths, some absent or null (written
// null by canonicalListing when the value is -1), and names that need escaping or are not ASCII.
func randomQueue(rnd *rand.Rand, i, nfields int) (name, vhost string, c queue.Counts, has queue.Presence) {
	names := []string{"orders.%d", "q-%d ünï", `quote"%d\`, "tab\t%d", "%d", "😀-%d"}
	name = fmt.Sprintf(names[rnd.IntN(len(names))], i)
	vhost = []string{"/", "", "prod/eu", "vh ünï/x"}[rnd.IntN(4)]
	if rnd.IntN(5) == 0 {
		return name, vhost, c, 0 // a stream: no counts
	}
	for f := range nfields {
		switch r := rnd.IntN(12); r {
		case 0:
			continue // absent
		case 1:
			c[f] = -1 // null
		default:
			c[f] = rnd.Int64N(int64(1) << (rnd.IntN(59) + 1)) // up to 18 digits, as fastQueue reads
			has |= queue.Bit(f)
		}
	}
	return name, vhost, c, has
}

// canonicalListing writes n queue objects as the broker does: the keys of keys in their sorted
// order, absent counts left out, no whitespace. A count of -1 without its presence bit is
// written as null.
func canonicalListing(keys *queueKeys, n int, queue func(i int) (name, vhost string, c queue.Counts, has queue.Presence)) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		name, vhost, c, has := queue(i)
		b.WriteByte('{')
		first := true
		for _, t := range keys.order {
			var v []byte
			switch t.field {
			case fieldName:
				v, _ = json.Marshal(name)
			case fieldVhost:
				v, _ = json.Marshal(vhost)
			default:
				switch {
				case has.Has(t.field):
					v = strconv.AppendInt(nil, c[t.field], 10)
				case c[t.field] == -1:
					v = []byte("null")
				default:
					continue
				}
			}
			if !first {
				b.WriteByte(',')
			}
			first = false
			b.WriteString(strconv.Quote(t.key) + ":")
			b.Write(v)
		}
		b.WriteByte('}')
	}
	b.WriteByte(']')
	return b.Bytes()
}

func TestQueueKeysOrder(t *testing.T) {
	keys := newQueueKeys([]string{"zz", "messages_ready", "o"})
	var order []string
	for _, k := range keys.order {
		order = append(order, k.key)
	}
	if want := []string{"messages_ready", "name", "o", "vhost", "zz"}; !slices.Equal(order, want) {
		t.Errorf("order %q, want %q", order, want)
	}
	for key, want := range map[string]int{"zz": 0, "messages_ready": 1, "o": 2, "name": fieldName, "vhost": fieldVhost, "messages": fieldOther, "": fieldOther, "zzz": fieldOther} {
		if got := keys.field([]byte(key)); got != want {
			t.Errorf("field(%q) = %d, want %d", key, got, want)
		}
	}
}

func TestQueueKeysRejectsBadTables(t *testing.T) {
	for _, counts := range [][]string{
		{""},
		{"a", "a"},
		{"name"},
		{"vhost"},
		{`a"b`},
		{`a\b`},
		{"é"},
		{strings.Repeat("k", maxKeyLen+1)},
		tooManyKeys(),
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("newQueueKeys(%q) accepted", counts)
				}
			}()
			newQueueKeys(counts)
		}()
	}
}

func tooManyKeys() []string {
	var keys []string
	for i := range queue.MaxFields + 1 {
		keys = append(keys, fmt.Sprint("k", i))
	}
	return keys
}

func TestQueuesQueryFromFields(t *testing.T) {
	want := "columns=name,vhost"
	for _, f := range queue.Fields() {
		want += "," + f.Management
	}
	want += "&disable_stats=true&enable_queue_totals=true"
	if got := QueuesQuery(); got != want {
		t.Errorf("QueuesQuery() = %q, want %q", got, want)
	}
}
