package plugin

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
)

// TestParseFields reads answers for chosen fields as 3.10.8 writes them:
// floats, NaN for none, sparse families, and only the chosen families
// required.
func TestParseFields(t *testing.T) {
	fs, err := queue.ParseList("consumers,consumer_capacity,head_message_timestamp")
	if err != nil {
		t.Fatal(err)
	}
	const tail = "# TYPE rabbitmq_build_info untyped\n# HELP rabbitmq_build_info RabbitMQ & Erlang/OTP version info\n" +
		`rabbitmq_build_info{rabbitmq_version="3.10.8",prometheus_plugin_version="3.10.8",prometheus_client_version="4.9.1",erlang_version="25.2.3"} 1` + "\n\n"
	consumers := "# TYPE rabbitmq_detailed_queue_consumers gauge\n# HELP rabbitmq_detailed_queue_consumers Consumers on a queue\n" +
		`rabbitmq_detailed_queue_consumers{vhost="v",queue="busy"} 2` + "\n" +
		`rabbitmq_detailed_queue_consumers{vhost="v",queue="empty"} 0` + "\n" +
		`rabbitmq_detailed_queue_consumers{vhost="v",queue="stream"} 0` + "\n"
	capacity := "# TYPE rabbitmq_detailed_queue_consumer_capacity gauge\n# HELP rabbitmq_detailed_queue_consumer_capacity Consumer capacity\n" +
		`rabbitmq_detailed_queue_consumer_capacity{vhost="v",queue="busy"} 3.5e-7` + "\n" +
		`rabbitmq_detailed_queue_consumer_capacity{vhost="v",queue="empty"} 1.0` + "\n"
	head := "# TYPE rabbitmq_detailed_queue_head_message_timestamp gauge\n# HELP rabbitmq_detailed_queue_head_message_timestamp Timestamp of the first message in the queue, if any\n" +
		`rabbitmq_detailed_queue_head_message_timestamp{vhost="v",queue="busy"} 1700000000` + "\n" +
		`rabbitmq_detailed_queue_head_message_timestamp{vhost="v",queue="empty"} NaN` + "\n"
	f := func(v float64) int64 { return int64(math.Float64bits(v)) }
	for _, tc := range []struct {
		name, body string
		want       map[sample]int64
		err        string
	}{
		{name: "all families", body: consumers + capacity + head + tail, want: map[sample]int64{
			{0, "v", "busy"}: 2, {0, "v", "empty"}: 0, {0, "v", "stream"}: 0,
			{1, "v", "busy"}: f(3.5e-7), {1, "v", "empty"}: f(1),
			{2, "v", "busy"}: f(1700000000),
		}},
		{name: "a chosen family missing", body: consumers + capacity + tail, err: "family rabbitmq_detailed_queue_head_message_timestamp is missing (not an answer to /metrics/detailed?family=queue_metrics?)"},
		{name: "not a number", body: consumers + strings.Replace(capacity, "3.5e-7", "Inf", 1) + head + tail, err: "whose value is not a count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRecorder()
			_, err := ParseOf(strings.NewReader(tc.body), r, nil, Limits{}, fs)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, want := r.String(), formatSamples(tc.want); got != want {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
	if got := RequestPath(fs); got != "/metrics/detailed?family=queue_consumer_count&family=queue_metrics" {
		t.Errorf("RequestPath = %s", got)
	}
	// A lone consumers family comes with the coarse group as a witness: in
	// raw labels a name with a line feed can forge a line within one block,
	// but not in every block the queue is rendered in.
	alone, _ := queue.ParseList("consumers")
	if got := RequestPath(alone); got != "/metrics/detailed?family=queue_coarse_metrics&family=queue_consumer_count" {
		t.Errorf("RequestPath(consumers) = %s", got)
	}
	coarse := "# TYPE rabbitmq_detailed_queue_messages gauge\n# HELP rabbitmq_detailed_queue_messages m\n" +
		`rabbitmq_detailed_queue_messages{vhost="v",queue="x"} 1` + "\n"
	forged := "# TYPE rabbitmq_detailed_queue_consumers gauge\n# HELP rabbitmq_detailed_queue_consumers c\n" +
		`rabbitmq_detailed_queue_consumers{vhost="v",queue="x"} 7` + "\n" +
		`rabbitmq_detailed_queue_consumers{vhost="v",queue="victim"} 0` + "\n"
	if _, err := ParseOf(strings.NewReader(coarse+forged+tail), newRecorder(), nil, Limits{}, alone); !errors.Is(err, ErrAmbiguous) {
		t.Errorf("a consumers line no coarse family has: %v, want ErrAmbiguous", err)
	}
	honest := strings.Replace(forged, `rabbitmq_detailed_queue_consumers{vhost="v",queue="victim"} 0`+"\n", "", 1)
	r := newRecorder()
	if _, err := ParseOf(strings.NewReader(coarse+honest+tail), r, nil, Limits{}, alone); err != nil || r.String() != formatSamples(map[sample]int64{{0, "v", "x"}: 7}) {
		t.Errorf("consumers alone: %v, %s", err, r)
	}

	// The default fields keep their non-sparse check: families of one group
	// must list the same queues.
	def := queue.Fields()
	body := "# TYPE rabbitmq_detailed_queue_messages gauge\n# HELP rabbitmq_detailed_queue_messages m\n" +
		`rabbitmq_detailed_queue_messages{vhost="v",queue="a"} 1` + "\n" +
		"# TYPE rabbitmq_detailed_queue_messages_ready gauge\n# HELP rabbitmq_detailed_queue_messages_ready r\n" +
		"# TYPE rabbitmq_detailed_queue_messages_unacked gauge\n# HELP rabbitmq_detailed_queue_messages_unacked u\n" +
		`rabbitmq_detailed_queue_messages_unacked{vhost="v",queue="a"} 0` + "\n" + tail
	if _, err := ParseOf(strings.NewReader(body), newRecorder(), nil, Limits{}, def); !errors.Is(err, ErrAmbiguous) {
		t.Errorf("families of one group listing different queues: %v, want ErrAmbiguous", err)
	}
}
