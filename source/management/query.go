package management

import (
	"strings"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
)

// QueuesQuery is the query string of the listing request: it asks only for the
// identity and the counts of queue.Fields. disable_stats and
// enable_queue_totals (3.8.2+) skip the per-queue rate statistics, which makes
// the listing much cheaper for the broker; older brokers ignore both and still
// honour columns. Never add sort=: it is slow, and returns 500 on 3.13.
func QueuesQuery() string { return QueuesQueryOf(queue.Fields()) }

// QueuesQueryOf is the query for the fields fs. On 3.10.8 a listing with
// disable_stats=true holds only the totals (messages, messages_ready,
// messages_unacknowledged): a field from the statistics database needs the
// listing without it, where every column (the depths too) comes from the
// statistics and lags the queues by their emission interval or more.
func QueuesQueryOf(fs queue.FieldSet) string {
	q := "columns=name,vhost," + strings.Join(columnsOf(fs), ",")
	if !fs.Stats() {
		q += "&disable_stats=true&enable_queue_totals=true"
	}
	return q
}
