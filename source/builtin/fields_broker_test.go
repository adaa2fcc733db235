package builtin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/scrapetest"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/testbed"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source/management"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source/plugin"
)

// ctlColumns are the fields compared with rabbitmqctl list_queues, which
// names them as the management API does.
var ctlColumns = []string{"messages", "consumers", "consumer_capacity", "head_message_timestamp"}

// TestFieldsMatchRabbitmqctl populates queues through AMQP on a vhost of its
// own (consumers, some holding unacknowledged deliveries; messages with and
// without a timestamp; idle, empty, quorum and stream queues) and waits
// until both sources and rabbitmqctl list_queues report the same values for
// every field rabbitmqctl gives, and the two sources the same samples.
func TestFieldsMatchRabbitmqctl(t *testing.T) {
	b := testbed.Primary(t)
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		t.Fatalf("rabbitmqctl is needed to read the truth: %v", err)
	}
	vhost := testbed.UniqueName("fields-")
	b.CreateVhost(t, vhost)
	conn := b.Dial(t, vhost)
	const ts = 1_700_000_000
	for _, q := range []struct {
		name, kind     string
		stamped, plain int // messages published with and without a timestamp
		prefetch       []int
	}{
		{name: "busy", kind: testbed.Classic, stamped: 5, plain: 1, prefetch: []int{2, 1}},
		{name: "untimed", kind: testbed.Classic, plain: 3},
		{name: "idle", kind: testbed.Classic, stamped: 2},
		{name: "empty", kind: testbed.Classic, prefetch: []int{10}},
		{name: "quorum", kind: testbed.Quorum, stamped: 3, prefetch: []int{1}},
		{name: "stream", kind: testbed.Stream, stamped: 2},
	} {
		b.DeclareQueue(t, conn, q.name, q.kind)
		publish(t, conn, q.name, q.stamped, time.Unix(ts, 0))
		publish(t, conn, q.name, q.plain, time.Time{})
		for _, n := range q.prefetch {
			consume(t, conn, q.name, n)
		}
	}

	gen, err := config.Load(&config.EnvFlags{Host: b.MgmtURL, User: &b.User, Password: &b.Password,
		AllowedTargets: `127\.0\.0\.1:[0-9]+`, IncludeVhosts: regexp.QuoteMeta(vhost),
		Fields: strings.Join(ctlColumns, ","), PluginEndpoints: "http://127.0.0.1:15692"}, "", config.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sources := map[string]source.Source{"management": management.Source{}, "plugin": &plugin.Source{}}

	// The statistics the management listing and rabbitmqctl read are
	// emitted every 5 s by default; a busy machine may take longer.
	start := time.Now()
	const settle = 2 * time.Minute
	var last string
	for {
		diff := compareFields(t, gen, sources, vhost)
		if diff == "" {
			t.Logf("sources and rabbitmqctl agreed after %s", time.Since(start).Round(time.Second))
			return
		}
		if diff != last {
			t.Logf("%s: %s", time.Since(start).Round(time.Second), diff)
			last = diff
		}
		if time.Since(start) > settle {
			t.Fatalf("after %s the sources and rabbitmqctl still disagree: %s", settle, diff)
		}
		time.Sleep(time.Second)
	}
}

// compareFields lists the vhost through rabbitmqctl and both sources and
// returns what disagrees ("" when nothing).
func compareFields(t *testing.T, gen *config.Generation, sources map[string]source.Source, vhost string) string {
	t.Helper()
	truth, err := listQueues(vhost)
	if err != nil {
		return err.Error()
	}
	got := map[string]scrapetest.Samples{}
	for name, src := range sources {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		l, err := src.List(ctx, gen.Target, gen.Env, slog.New(slog.DiscardHandler))
		cancel()
		if err != nil {
			return fmt.Sprintf("%s: %v", name, err)
		}
		var buf bytes.Buffer
		if _, err := l.Queues.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		got[name] = scrapetest.ParseText(t, buf.String())
	}
	var diffs []string
	for _, f := range gen.Env.QueueFields() {
		for queue, row := range truth {
			k := scrapetest.Key(f.Metric, "host", gen.Target.Hostname, "vhost", vhost, "name", queue)
			want, known := row[f.Management]
			for name, s := range got {
				v, ok := s[k]
				switch {
				case !known:
					// rabbitmqctl gives none (quorum and stream queues lack
					// some fields): the sources must agree with each other,
					// checked below, and a head message timestamp is missing.
					if ok && f.Name == "head_message_timestamp" {
						diffs = append(diffs, fmt.Sprintf("%s: %s = %v, rabbitmqctl has none", name, k, v))
					}
				case !ok || !near(f.Name, v, want):
					diffs = append(diffs, fmt.Sprintf("%s: %s = %v (present %v), rabbitmqctl %v", name, k, v, ok, want))
				}
			}
		}
	}
	m, p := got["management"], got["plugin"]
	for k, v := range m {
		if pv, ok := p[k]; !ok || !near(k, pv, v) {
			diffs = append(diffs, fmt.Sprintf("%s: management %v, plugin %v (present %v)", k, v, pv, ok))
		}
	}
	for k, v := range p {
		if _, ok := m[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: plugin %v, management none", k, v))
		}
	}
	if len(m) == 0 {
		diffs = append(diffs, "no samples yet")
	}
	sort.Strings(diffs)
	return strings.Join(diffs, "; ")
}

// near compares values of the field (or series) named name. Consumer
// capacity is a moving average each queue re-emits with its statistics, so
// a busy queue's value drifts between three reads that cannot be
// simultaneous (by about 1e-8 per second on the test's queues); every other
// field must be equal.
func near(name string, a, b float64) bool {
	if strings.Contains(name, "consumer_capacity") {
		return math.Abs(a-b) <= 0.01
	}
	return a == b
}

// listQueues runs rabbitmqctl list_queues and returns each queue's numeric
// columns (an empty value is left out).
func listQueues(vhost string) (map[string]map[string]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := append([]string{"-q", "list_queues", "-p", vhost, "--formatter", "json", "name"}, ctlColumns...)
	out, err := exec.CommandContext(ctx, "rabbitmqctl", args...).Output()
	if err != nil {
		return nil, fmt.Errorf("rabbitmqctl list_queues: %w", err)
	}
	var rows []map[string]any
	if err := json.Unmarshal(out, &rows); err != nil {
		return nil, fmt.Errorf("rabbitmqctl list_queues: %w: %.200s", err, out)
	}
	truth := map[string]map[string]float64{}
	for _, r := range rows {
		name, _ := r["name"].(string)
		truth[name] = map[string]float64{}
		for _, c := range ctlColumns {
			if v, ok := r[c].(float64); ok {
				truth[name][c] = v
			}
		}
	}
	return truth, nil
}

// publish sends n confirmed messages to queue, with the timestamp property
// when ts is not zero.
func publish(t *testing.T, conn *amqp.Connection, queue string, n int, ts time.Time) {
	t.Helper()
	if n == 0 {
		return
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range n {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, true, false,
			amqp.Publishing{DeliveryMode: amqp.Persistent, Timestamp: ts, Body: fmt.Appendf(nil, "m%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := dc.WaitContext(ctx); err != nil || !ok {
			t.Fatalf("publish to %s not confirmed: %v", queue, err)
		}
	}
}

// consume attaches a consumer that never acknowledges, so up to prefetch
// deliveries stay unacknowledged until the test ends.
func consume(t *testing.T, conn *amqp.Connection, queue string, prefetch int) {
	t.Helper()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ch.Close() })
	if err := ch.Qos(prefetch, 0, false); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.Consume(queue, "", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
}
