package builtin_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/fakeapi"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queueset"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source/management"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source/plugin"
)

// TestDefaultAnswerUnchanged pins the default answer byte for byte: the
// golden was written by the code before fields were selectable (commit
// 444e930, where both sources wrote the same bytes), from the same fake
// answers; naming the three default fields explicitly changes nothing.
func TestDefaultAnswerUnchanged(t *testing.T) {
	o := fakeapi.Options{Queues: 150, Vhosts: 6, StreamEvery: 50, Shape: fakeapi.Full}
	named, err := queue.ParseList(" messages_unacknowledged,messages, messages_ready")
	if err != nil || !named.IsDefault() {
		t.Fatalf("the three depths named explicitly: %v, %v", named.Names(), err)
	}
	if got, want := management.QueuesQueryOf(named), "columns=name,vhost,messages,messages_ready,messages_unacknowledged&disable_stats=true&enable_queue_totals=true"; got != want {
		t.Errorf("default listing query %q, want %q as before", got, want)
	}
	if got, want := plugin.RequestPath(named), "/metrics/detailed?family=queue_coarse_metrics"; got != want {
		t.Errorf("default plugin path %q, want %q as before", got, want)
	}
	const golden = "default.golden"
	for _, tc := range []struct {
		name string
		fill func(*queueset.QueueSet) error
	}{
		{"management", func(qs *queueset.QueueSet) error {
			return management.DecodeQueues(bytes.NewReader(fakeapi.Generate(o)), management.DecodeLimits{}, func(q *management.Queue) error {
				return qs.Add(q.Vhost, q.Name, &q.Counts, q.Has)
			})
		}},
		{"plugin", func(qs *queueset.QueueSet) error {
			_, err := plugin.Parse(bytes.NewReader(fakeapi.GeneratePlugin(o, fakeapi.PluginRaw)), qs, nil, plugin.Limits{})
			return err
		}},
		{"management, fields named", func(qs *queueset.QueueSet) error {
			return management.DecodeQueuesOf(bytes.NewReader(fakeapi.Generate(o)), management.DecodeLimits{}, named, func(q *management.Queue) error {
				return qs.Add(q.Vhost, q.Name, &q.Counts, q.Has)
			})
		}},
		{"plugin, fields named", func(qs *queueset.QueueSet) error {
			_, err := plugin.ParseOf(bytes.NewReader(fakeapi.GeneratePluginOf(o, fakeapi.PluginEscaped, named)), qs, nil, plugin.Limits{}, named)
			return err
		}},
	} {
		qs := queueset.NewQueueSetOf("rabbit.example", 0, named)
		if err := tc.fill(qs); err != nil {
			t.Fatal(err)
		}
		if err := qs.Finish(); err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if _, err := qs.WriteTo(&got); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", golden)
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("%s: the default answer changed (%d bytes, golden %d)", tc.name, got.Len(), len(want))
		}
	}
}
