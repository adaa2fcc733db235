// Package queue holds the table of per-queue fields: what each source reads
// and what the exporter calls it. The management column list, the JSON
// decoder's keys, the plugin's family groups and parser, QueueSet and its
// writer, the fakes and the tests' expectations all read this table, so a
// new field is one new row.
package queue

import (
	"fmt"
	"strings"
)

// MaxFields is the most fields one module may choose: Presence has one bit
// per chosen field and one for QueueSet's own use.
const MaxFields = 7

// NumFields is the number of default fields (the three depths).
const NumFields = 3

// Field describes one per-queue gauge.
type Field struct {
	Name   string // as chosen in --queue.fields and a module's fields:
	Metric string // exported family
	Help   string
	Unit   string // of the exported value ("" for a plain count)

	// Management is the key in GET /api/queues objects (and its columns=
	// list). Stats says the broker gives it only from its statistics
	// database, so the listing must be asked for without disable_stats
	// (whose answer, on 3.10.8, holds only the totals).
	Management string
	Stats      bool

	// Group is the rabbitmq_prometheus family group asked for with
	// /metrics/detailed?family=GROUP, and Plugin the family of that group
	// holding this field. Sparse families may leave queues out (streams,
	// quorum queues), so they are not compared with the group's others.
	Group  string
	Plugin string
	Sparse bool

	// Float values may be fractional: they are stored as float64 bits, and
	// NaN or null means no sample.
	Float bool
}

// Plugin family groups.
const (
	GroupCoarse   = "queue_coarse_metrics"
	GroupConsumer = "queue_consumer_count"
	GroupMetrics  = "queue_metrics"
)

// table lists every field the exporter knows. The first NumFields rows are
// the default, in the order the writer has always emitted them.
var table = []Field{
	{
		Name: "messages", Metric: "rabbitmq_individual_queue_messages",
		Help:       "Messages in the queue (ready plus unacknowledged).",
		Management: "messages",
		Group:      GroupCoarse, Plugin: "rabbitmq_detailed_queue_messages",
	},
	{
		Name: "messages_ready", Metric: "rabbitmq_individual_queue_messages_ready",
		Help:       "Messages in the queue ready to be delivered to consumers.",
		Management: "messages_ready",
		Group:      GroupCoarse, Plugin: "rabbitmq_detailed_queue_messages_ready",
	},
	{
		Name: "messages_unacknowledged", Metric: "rabbitmq_individual_queue_messages_unacknowledged",
		Help:       "Messages in the queue delivered to consumers but not yet acknowledged.",
		Management: "messages_unacknowledged",
		Group:      GroupCoarse, Plugin: "rabbitmq_detailed_queue_messages_unacked",
	},
	{
		Name: "consumers", Metric: "rabbitmq_individual_queue_consumers",
		Help:       "Consumers attached to the queue.",
		Management: "consumers", Stats: true,
		Group: GroupConsumer, Plugin: "rabbitmq_detailed_queue_consumers",
	},
	{
		Name: "consumer_capacity", Metric: "rabbitmq_individual_queue_consumer_capacity",
		Help:       "Share of time (0-1) the queue could deliver to its consumers at once.",
		Management: "consumer_capacity", Stats: true,
		Group: GroupMetrics, Plugin: "rabbitmq_detailed_queue_consumer_capacity", Sparse: true,
		Float: true,
	},
	{
		Name: "head_message_timestamp", Metric: "rabbitmq_individual_queue_head_message_timestamp_seconds",
		Help: "Timestamp property of the message at the head of the queue, in seconds since the epoch; " +
			"no sample when the broker reports none.",
		Unit:       "seconds",
		Management: "head_message_timestamp", Stats: true,
		Group: GroupMetrics, Plugin: "rabbitmq_detailed_queue_head_message_timestamp", Sparse: true,
		Float: true,
	},
	{
		Name: "message_bytes", Metric: "rabbitmq_individual_queue_message_bytes",
		Help:       "Sum of the body sizes of the messages in the queue, in bytes.",
		Unit:       "bytes",
		Management: "message_bytes", Stats: true,
		Group: GroupMetrics, Plugin: "rabbitmq_detailed_queue_messages_bytes", Sparse: true,
	},
	{
		Name: "messages_persistent", Metric: "rabbitmq_individual_queue_messages_persistent",
		Help:       "Persistent messages in the queue.",
		Management: "messages_persistent", Stats: true,
		Group: GroupMetrics, Plugin: "rabbitmq_detailed_queue_messages_persistent", Sparse: true,
	},
	{
		Name: "memory", Metric: "rabbitmq_individual_queue_memory_bytes",
		Help:       "Memory used by the queue's process, in bytes.",
		Unit:       "bytes",
		Management: "memory", Stats: true,
		Group: GroupMetrics, Plugin: "rabbitmq_detailed_queue_process_memory_bytes", Sparse: true,
	},
}

// Table returns every known field. It is a copy: the table cannot be
// changed from outside.
func Table() []Field { return append([]Field(nil), table...) }

// FieldSet is the ordered set of fields one module exports, indexed by field
// number (Counts and Presence use the same numbers). It is never changed
// once built, so listings may share it.
type FieldSet []Field

// Fields returns the default fields (the three depths), indexed by field
// number. It is a copy: the table cannot be changed from outside.
func Fields() FieldSet { return append(FieldSet(nil), table[:NumFields]...) }

// IsDefault reports whether fs are the default fields in their order.
func (fs FieldSet) IsDefault() bool {
	if len(fs) != NumFields {
		return false
	}
	for i := range fs {
		if fs[i] != table[i] {
			return false
		}
	}
	return true
}

// Names lists the fields' names, comma-separated.
func (fs FieldSet) Names() string {
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.Name
	}
	return strings.Join(names, ",")
}

// All is the Presence with every field of fs reported.
func (fs FieldSet) All() Presence { return 1<<len(fs) - 1 }

// Required is the Presence of the fields every queue should report: a
// sparse field (no head message timestamp on an empty queue, no consumer
// capacity on a stream) is often missing without anything being wrong.
func (fs FieldSet) Required() Presence {
	var p Presence
	for i, f := range fs {
		if !f.Sparse {
			p |= Bit(i)
		}
	}
	return p
}

// Stats reports whether any field needs the management statistics.
func (fs FieldSet) Stats() bool {
	for _, f := range fs {
		if f.Stats {
			return true
		}
	}
	return false
}

// Groups lists the plugin family groups fs need, each once, in table order.
func (fs FieldSet) Groups() []string {
	var groups []string
	for _, f := range fs {
		seen := false
		for _, g := range groups {
			seen = seen || g == f.Group
		}
		if !seen {
			groups = append(groups, f.Group)
		}
	}
	return groups
}

// PluginGroups are the family groups a plugin request for fs asks for:
// Groups, plus queue_coarse_metrics when queue_consumer_count would be the
// only group. That group is one family, so in an answer with raw labels
// (3.9.9-3.12.10) a queue name with a line feed could forge a whole sample
// line of it that no other block contradicts; with the coarse families
// beside it every queue is rendered in several blocks, which the plugin
// parser compares (source/plugin/doc.go).
func (fs FieldSet) PluginGroups() []string {
	groups := fs.Groups()
	if len(groups) == 1 && groups[0] == GroupConsumer {
		groups = []string{GroupCoarse, GroupConsumer}
	}
	return groups
}

// Select picks the fields named in names from tab (duplicates and empty
// names ignored), in tab's order so that the answer does not depend on how
// the operator ordered the list. No names means the default.
func Select(tab []Field, names []string) (FieldSet, error) {
	want := map[string]bool{}
	for _, n := range names {
		if n = strings.TrimSpace(n); n != "" {
			want[n] = true
		}
	}
	if len(want) == 0 {
		return Fields(), nil
	}
	var fs FieldSet
	for _, f := range tab {
		if want[f.Name] {
			fs = append(fs, f)
			delete(want, f.Name)
		}
	}
	if len(want) > 0 {
		var unknown []string
		for _, n := range names {
			if n = strings.TrimSpace(n); want[n] {
				unknown = append(unknown, fmt.Sprintf("%q", n))
				delete(want, n)
			}
		}
		valid := make([]string, len(tab))
		for i, f := range tab {
			valid[i] = f.Name
		}
		return nil, fmt.Errorf("unknown field %s (valid: %s)", strings.Join(unknown, ", "), strings.Join(valid, ", "))
	}
	if len(fs) > MaxFields {
		return nil, fmt.Errorf("%d fields chosen, at most %d", len(fs), MaxFields)
	}
	return fs, nil
}

// ParseList reads a comma-separated list of field names.
func ParseList(s string) (FieldSet, error) { return Select(table, strings.Split(s, ",")) }

// Counts holds one queue's values, indexed by field number; a Float field's
// value is its float64 bits.
type Counts [MaxFields]int64

// Presence has bit i set when field i was reported. An absent field gets no
// sample (never a made-up 0).
type Presence uint8

// AllPresent is a Presence with every default field reported.
const AllPresent Presence = 1<<NumFields - 1

// Bit is the Presence bit of field i.
func Bit(i int) Presence { return 1 << i }

// Has reports whether field i is present.
func (p Presence) Has(i int) bool { return p&(1<<i) != 0 }
