// Package fakeapi imitates the RabbitMQ management API's queue listing at any
// size, for benchmarks and load tests that need far more queues than a test
// broker can hold. The body is rendered once up front, so serving it costs no
// more than writing a byte slice: whatever time a scrape adds is the exporter's.
package fakeapi

import (
	"strconv"
	"strings"
)

// Shape selects the per-queue object layout.
type Shape string

const (
	// Lean is what a 3.10 broker answers to the exporter's columns= query:
	// keys messages, messages_ready, messages_unacknowledged, name, vhost.
	Lean Shape = "lean"
	// Full is the default (no query parameters) listing with all statistics,
	// about 1.5 KB per queue, copied from source/management/testdata/queues-3.10.8-default.json.
	Full Shape = "full"
)

// Options describe a generated listing.
type Options struct {
	Queues int
	// Vhosts spreads the queues round-robin over this many vhosts; the first
	// is "/". Values below 1 mean 1.
	Vhosts int
	// StreamEvery makes every StreamEvery-th queue a stream listed without
	// counts, as the broker does for streams with disable_stats (0: none).
	StreamEvery int
	// Shape is Lean when empty.
	Shape Shape
}

// DefaultStreamEvery gives 2% count-less queues, a plausible share of streams.
const DefaultStreamEvery = 50

var (
	services = []string{"orders", "payments", "billing", "inventory", "shipping", "notifications", "accounts", "search", "analytics", "audit", "pricing", "checkout"}
	regions  = []string{"eu-west-1", "us-east-1", "eu-central-1", "ap-south-1", "us-west-2"}
	roles    = []string{"consumer", "worker", "retry", "events", "commands", "dlq"}
	vhosts   = []string{"/", "prod", "staging", "team-payments", "team-logistics/eu", "analytics"}
)

// QueueName is the i-th queue's name, e.g. orders.eu-west-1.consumer-000123.
func QueueName(i int) string {
	return string(appendQueueName(nil, i))
}

func appendQueueName(b []byte, i int) []byte {
	h := mix(uint64(i))
	b = append(b, services[h%uint64(len(services))]...)
	b = append(b, '.')
	b = append(b, regions[(h>>8)%uint64(len(regions))]...)
	b = append(b, '.')
	b = append(b, roles[(h>>16)%uint64(len(roles))]...)
	b = append(b, '-')
	// Zero-padded to 6 digits so names stay unique and of realistic length.
	var digits [20]byte
	d := strconv.AppendInt(digits[:0], int64(i), 10)
	for n := len(d); n < 6; n++ {
		b = append(b, '0')
	}
	return append(b, d...)
}

// VhostName is the v-th vhost: "/" first, then a few realistic names, then vhost-<v>.
func VhostName(v int) string {
	if v < len(vhosts) {
		return vhosts[v]
	}
	return "vhost-" + strconv.Itoa(v)
}

// Counts are the i-th queue's messages, ready and unacknowledged: mostly
// empty queues, some with a backlog of every order of magnitude.
func Counts(i int) (messages, ready, unacked int64) {
	h := mix(uint64(i) ^ 0x5bd1e995)
	var limit uint64
	switch h % 10 {
	case 0, 1, 2, 3, 4:
		return 0, 0, 0
	case 5, 6, 7:
		limit = 100
	case 8:
		limit = 100_000
	default:
		limit = 100_000_000
	}
	messages = int64((h >> 8) % limit)
	unacked = min(int64((h>>40)%50), messages)
	return messages, messages - unacked, unacked
}

// HasCounts tells whether the i-th queue of a listing made with o has counts.
func (o Options) HasCounts(i int) bool {
	return o.StreamEvery <= 0 || i%o.StreamEvery != o.StreamEvery-1
}

// mix is SplitMix64's finaliser: cheap, deterministic variety from an index.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// Generate renders the JSON array the broker would return for o.
func Generate(o Options) []byte {
	nv := max(o.Vhosts, 1)
	vh := make([]string, nv)
	for v := range vh {
		vh[v] = VhostName(v)
	}
	per := 110
	if o.Shape == Full {
		per = 1700
	}
	b := make([]byte, 0, o.Queues*per+2)
	b = append(b, '[')
	var name []byte
	for i := range o.Queues {
		if i > 0 {
			b = append(b, ',')
		}
		name = appendQueueName(name[:0], i)
		vhost := vh[i%nv]
		if !o.HasCounts(i) {
			if o.Shape == Full {
				b = fullStream.append(b, 0, 0, 0, name, vhost)
			} else {
				b = append(b, `{"name":`...)
				b = appendJSONString(b, name)
				b = append(b, `,"vhost":`...)
				b = appendJSONString(b, vhost)
				b = append(b, '}')
			}
			continue
		}
		m, r, u := Counts(i)
		if o.Shape == Full {
			b = fullClassic.append(b, m, r, u, name, vhost)
			continue
		}
		b = append(b, `{"messages":`...)
		b = strconv.AppendInt(b, m, 10)
		b = append(b, `,"messages_ready":`...)
		b = strconv.AppendInt(b, r, 10)
		b = append(b, `,"messages_unacknowledged":`...)
		b = strconv.AppendInt(b, u, 10)
		b = append(b, `,"name":`...)
		b = appendJSONString(b, name)
		b = append(b, `,"vhost":`...)
		b = appendJSONString(b, vhost)
		b = append(b, '}')
	}
	return append(b, ']')
}

// appendJSONString quotes s as JSON does; generated names never need escapes,
// but callers of the handler may pass their own.
func appendJSONString[T []byte | string](b []byte, s T) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// template is a queue object split at its placeholders.
type template struct {
	parts  []string
	fields []string // placeholder between parts[i] and parts[i+1]
}

func parseTemplate(s string) template {
	var t template
	for {
		i := strings.Index(s, "{{")
		if i < 0 {
			t.parts = append(t.parts, s)
			return t
		}
		j := strings.Index(s[i:], "}}")
		t.parts = append(t.parts, s[:i])
		t.fields = append(t.fields, s[i+2:i+j])
		s = s[i+j+2:]
	}
}

func (t template) append(b []byte, m, r, u int64, name []byte, vhost string) []byte {
	for i, p := range t.parts {
		b = append(b, p...)
		if i == len(t.fields) {
			break
		}
		switch t.fields[i] {
		case "M":
			b = strconv.AppendInt(b, m, 10)
		case "R":
			b = strconv.AppendInt(b, r, 10)
		case "U":
			b = strconv.AppendInt(b, u, 10)
		case "NAME":
			b = appendJSONString(b, name)
		case "VHOST":
			b = appendJSONString(b, vhost)
		}
	}
	return b
}

// fullClassic is the classic queue of queues-3.10.8-default.json with its
// identity and counts replaced by placeholders; the *_ram counts follow the
// main ones since a classic v1 queue keeps small backlogs in memory.
var fullClassic = parseTemplate(`{"arguments":{},"auto_delete":false,"backing_queue_status":{"avg_ack_egress_rate":0.0,"avg_ack_ingress_rate":0.0,"avg_egress_rate":0.0,"avg_ingress_rate":0.38647282363430596,"delta":["delta","undefined",0,0,"undefined"],"len":{{M}},"mode":"default","next_deliver_seq_id":0,"next_seq_id":{{M}},"q1":0,"q2":0,"q3":0,"q4":{{M}},"target_ram_count":"infinity","version":1},"consumer_capacity":0,"consumer_utilisation":0,"consumers":0,"durable":true,"effective_policy_definition":{},"exclusive":false,"exclusive_consumer_tag":null,"garbage_collection":{"fullsweep_after":65535,"max_heap_size":0,"min_bin_vheap_size":46422,"min_heap_size":233,"minor_gcs":12},"head_message_timestamp":null,"idle_since":"2026-11-30T10:23:16.093+00:00","memory":17144,"message_bytes":{{M}},"message_bytes_paged_out":0,"message_bytes_persistent":0,"message_bytes_ram":{{M}},"message_bytes_ready":{{R}},"message_bytes_unacknowledged":{{U}},"message_stats":{"publish":{{M}},"publish_details":{"rate":0.0}},"messages":{{M}},"messages_details":{"rate":0.0},"messages_paged_out":0,"messages_persistent":0,"messages_ram":{{M}},"messages_ready":{{R}},"messages_ready_details":{"rate":0.0},"messages_ready_ram":{{R}},"messages_unacknowledged":{{U}},"messages_unacknowledged_details":{"rate":0.0},"messages_unacknowledged_ram":{{U}},"name":{{NAME}},"node":"rabbit@localhost","operator_policy":null,"policy":null,"recoverable_slaves":null,"reductions":10646,"reductions_details":{"rate":0.0},"single_active_consumer_tag":null,"state":"running","type":"classic","vhost":{{VHOST}}}`)

// fullStream is the stream of queues-3.10.8-default.json without its counts,
// as newer brokers list streams (queues-3.13-default.json).
var fullStream = parseTemplate(`{"arguments":{"x-queue-type":"stream"},"auto_delete":false,"consumers":0,"durable":true,"effective_policy_definition":{},"exclusive":false,"members":["rabbit@localhost"],"memory":13976,"message_stats":{"publish":3,"publish_details":{"rate":0.0}},"name":{{NAME}},"node":"rabbit@localhost","online":["rabbit@localhost"],"operator_policy":null,"policy":null,"readers":{"rabbit@localhost":0},"reductions":0,"reductions_details":{"rate":0.0},"state":"running","type":"stream","vhost":{{VHOST}}}`)
