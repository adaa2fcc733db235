package queue

// NumFields is the number of per-queue counts the exporter knows.
const NumFields = 3

// Field describes one per-queue count: where each source reads it and what
// the exporter calls it. It is the only place a count is named; the
// management client's column list, the JSON decoder, the plugin parser,
// QueueSet and its writer all read this table, so a new count is one new row
// (and NumFields).
type Field struct {
	Metric     string // exported family
	Help       string
	Management string // key in GET /api/queues objects (and its columns= list)
	Plugin     string // rabbitmq_prometheus family in /metrics/detailed?family=queue_coarse_metrics
}

// fields is indexed by field number; the writer emits families in this order.
var fields = [NumFields]Field{
	{
		Metric:     "rabbitmq_individual_queue_messages",
		Help:       "Messages in the queue (ready plus unacknowledged).",
		Management: "messages",
		Plugin:     "rabbitmq_detailed_queue_messages",
	},
	{
		Metric:     "rabbitmq_individual_queue_messages_ready",
		Help:       "Messages in the queue ready to be delivered to consumers.",
		Management: "messages_ready",
		Plugin:     "rabbitmq_detailed_queue_messages_ready",
	},
	{
		Metric:     "rabbitmq_individual_queue_messages_unacknowledged",
		Help:       "Messages in the queue delivered to consumers but not yet acknowledged.",
		Management: "messages_unacknowledged",
		Plugin:     "rabbitmq_detailed_queue_messages_unacked",
	},
}

// Fields returns the per-queue counts, indexed by field number. It is a
// copy: the table cannot be changed from outside.
func Fields() [NumFields]Field { return fields }

// Counts holds one queue's counts, indexed by field number.
type Counts [NumFields]int64

// Presence has bit i set when count i was reported. An absent count gets no
// sample (never a made-up 0).
type Presence uint8

// AllPresent is a Presence with every count reported.
const AllPresent Presence = 1<<NumFields - 1

// Bit is the Presence bit of field i.
func Bit(i int) Presence { return 1 << i }

// Has reports whether field i is present.
func (p Presence) Has(i int) bool { return p&(1<<i) != 0 }
