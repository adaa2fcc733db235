package web

import (
	"net/http"
	"testing"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
)

// TestProbeFields: --queue.fields and a module's fields: reach the broker
// request and the answer, for /probe with the env credentials and with a
// file module.
func TestProbeFields(t *testing.T) {
	const listing = `[{"consumers":0,"head_message_timestamp":1700000000,"messages_ready":4,"name":"waiting","vhost":"/"},` +
		`{"consumers":2,"head_message_timestamp":null,"messages_ready":0,"name":"served","vhost":"/"},` +
		`{"consumers":1,"name":"stream","vhost":"/"}]`
	var query string
	_, addr := fakeBroker(t, func(w http.ResponseWriter, r *http.Request) {
		query = r.URL.RawQuery
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(listing))
	})
	h, _ := newHandler(t, config.EnvFlags{Host: addr, Fields: "head_message_timestamp, consumers,messages_ready"},
		"auth_modules:\n  m:\n    username: u\n    password: p\n    targets: ['.*']\n    fields: [consumers]\n")
	for _, tc := range []struct {
		name, rawQuery, wantQuery string
		want                      map[string]float64
		absent                    []string
	}{
		{"env", "", "columns=name,vhost,messages_ready,consumers,head_message_timestamp", map[string]float64{
			queueKey("rabbitmq_individual_queue_messages_ready", "/", "waiting"):                 4,
			queueKey("rabbitmq_individual_queue_consumers", "/", "served"):                       2,
			queueKey("rabbitmq_individual_queue_head_message_timestamp_seconds", "/", "waiting"): 1700000000,
			hostKey("rabbitmq_queues_missing_counts"):                                            1, // the stream: no messages_ready
		}, []string{
			queueKey("rabbitmq_individual_queue_head_message_timestamp_seconds", "/", "served"),
			queueKey("rabbitmq_individual_queue_messages", "/", "waiting"),
		}},
		{"module", "target=" + addr + "&auth_module=m", "columns=name,vhost,consumers", map[string]float64{
			queueKey("rabbitmq_individual_queue_consumers", "/", "stream"): 1,
			hostKey("rabbitmq_queues_missing_counts"):                      0,
		}, []string{queueKey("rabbitmq_individual_queue_messages_ready", "/", "waiting")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := doScrape(t, h.Probe, tc.rawQuery, nil)
			if res.status != http.StatusOK {
				t.Fatalf("status %d: %s", res.status, res.body)
			}
			if query != tc.wantQuery {
				t.Errorf("broker asked for %q, want %q", query, tc.wantQuery)
			}
			for k, v := range tc.want {
				if got, ok := res.samples[k]; !ok || got != v {
					t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
				}
			}
			for _, k := range tc.absent {
				if _, ok := res.samples[k]; ok {
					t.Errorf("%s present", k)
				}
			}
		})
	}
}
