package main

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/scrapetest"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/testbed"
)

type wantQueue struct {
	vhost, name, kind        string
	publish, hold            int
	messages, ready, unacked int64
	countsAbsent             bool // streams: the lean listing carries no totals
}

// TestRealBrokerExactCounts populates the real broker through AMQP (vhosts with
// a space, a slash and non-ASCII letters; classic, quorum and stream queues;
// ready and unacknowledged messages), then scrapes the built exporter over HTTP
// and checks every sample's labels and value.
func TestRealBrokerExactCounts(t *testing.T) {
	b := testbed.Primary(t)
	suffix := testbed.UniqueName("")
	vhSpace := "it vhost with space " + suffix
	vhOdd := "it/slash/ünïcödé-" + suffix
	b.CreateVhost(t, vhSpace)
	b.CreateVhost(t, vhOdd)

	queues := []wantQueue{
		{vhost: "/", name: "it.classic." + suffix, kind: testbed.Classic, publish: 7, hold: 2, messages: 7, ready: 5, unacked: 2},
		{vhost: "/", name: "it.quorum." + suffix, kind: testbed.Quorum, publish: 4, hold: 1, messages: 4, ready: 3, unacked: 1},
		{vhost: "/", name: "it.stream." + suffix, kind: testbed.Stream, publish: 3, countsAbsent: true},
		{vhost: vhSpace, name: "it empty \"quoted\" " + suffix, kind: testbed.Classic},
		{vhost: vhSpace, name: "it.quorum.ready." + suffix, kind: testbed.Quorum, publish: 11, messages: 11, ready: 11},
		{vhost: vhOdd, name: "it.ünï/名前." + suffix, kind: testbed.Classic, publish: 3, hold: 3, messages: 3, unacked: 3},
	}
	for _, q := range queues {
		conn := b.Dial(t, q.vhost)
		b.DeclareQueue(t, conn, q.name, q.kind)
		if q.publish > 0 {
			b.Publish(t, conn, q.name, q.publish)
		}
		if q.hold > 0 {
			b.HoldUnacked(t, conn, q.name, q.hold)
		}
	}
	for _, q := range queues {
		if q.countsAbsent {
			b.WaitForQueueListed(t, q.vhost, q.name, 30*time.Second)
			continue
		}
		b.WaitForCounts(t, q.vhost, q.name, q.messages, q.ready, q.unacked, 30*time.Second)
	}

	mgmt, _ := url.Parse(b.MgmtURL)
	p := startExporter(t, []string{"RABBITMQ_HOST=" + mgmt.Host, "RABBITMQ_USER=" + b.User, "RABBITMQ_PASSWORD=" + b.Password})
	host := mgmt.Hostname()

	// The exporter reads the lean listing, whose totals can lag the per-queue
	// endpoint by a stats interval: retry until it agrees, then assert strictly.
	check := func(res response) error {
		s := res.samples(t)
		if s[scrapetest.Key("rabbitmq_up", "host", host)] != 1 {
			return fmt.Errorf("rabbitmq_up != 1")
		}
		for _, q := range queues {
			for metric, want := range map[string]int64{
				"rabbitmq_individual_queue_messages":                q.messages,
				"rabbitmq_individual_queue_messages_ready":          q.ready,
				"rabbitmq_individual_queue_messages_unacknowledged": q.unacked,
			} {
				got, ok := s[queueKey(metric, host, q.vhost, q.name)]
				if q.countsAbsent {
					if ok {
						return fmt.Errorf("%s for stream %q must have no sample, got %v", metric, q.name, got)
					}
					continue
				}
				if !ok || got != float64(want) {
					return fmt.Errorf("%s{vhost=%q,name=%q} = %v (present %v), want %d", metric, q.vhost, q.name, got, ok, want)
				}
			}
		}
		if s[scrapetest.Key("rabbitmq_queues_missing_counts", "host", host)] < 1 {
			return fmt.Errorf("rabbitmq_queues_missing_counts should count the stream queue")
		}
		return nil
	}
	for _, path := range []string{"/probe", "/probe?target=" + url.QueryEscape(b.MgmtURL), "/metrics"} {
		var lastErr error
		deadline := time.Now().Add(testbed.Patience)
		for {
			res := p.get(t, path, nil)
			if res.status != 200 {
				t.Fatalf("GET %s: %d %s", path, res.status, res.body)
			}
			if lastErr = check(res); lastErr == nil {
				if strings.HasPrefix(path, "/probe") && res.samples(t)["probe_success"] != 1 {
					t.Fatalf("GET %s: probe_success != 1", path)
				}
				scrapetest.Promtool(t, res.header, []byte(res.body))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s: after %v: %v\n%s", path, testbed.Patience, lastErr, res.body)
			}
			time.Sleep(time.Second)
		}
	}
}

// TestOpenMetricsFromRealBroker: the real scrape negotiates OpenMetrics and
// ends with exactly one # EOF.
func TestOpenMetricsFromRealBroker(t *testing.T) {
	b := testbed.Primary(t)
	mgmt, _ := url.Parse(b.MgmtURL)
	p := startExporter(t, []string{"RABBITMQ_HOST=" + mgmt.Host})
	for _, path := range []string{"/probe", "/metrics"} {
		res := p.get(t, path, http.Header{"Accept": {"application/openmetrics-text;version=1.0.0;q=0.9,text/plain;q=0.5"}})
		if !strings.HasPrefix(res.header.Get("Content-Type"), "application/openmetrics-text") {
			t.Fatalf("%s: Content-Type %q", path, res.header.Get("Content-Type"))
		}
		if !strings.HasSuffix(res.body, "# EOF\n") || strings.Count(res.body, "# EOF") != 1 || !strings.Contains(res.body, "rabbitmq_up{host=\"127.0.0.1\"} 1") {
			t.Fatalf("%s: bad OpenMetrics body:\n%s", path, res.body)
		}
	}
}

// queuesOnBothBrokers declares one queue on each real node (classic on the
// primary, kindB on the second), publishes na and nb messages through AMQP and
// waits until the management API reports them.
func queuesOnBothBrokers(t *testing.T, prefix, kindB string, na, nb int) (primary, second testbed.Broker, qa, qb string) {
	t.Helper()
	primary = testbed.Primary(t)
	second = testbed.Second(t)
	suffix := testbed.UniqueName("")
	qa, qb = prefix+"a."+suffix, prefix+"b."+suffix
	ca := primary.Dial(t, "/")
	primary.DeclareQueue(t, ca, qa, testbed.Classic)
	primary.Publish(t, ca, qa, na)
	cb := second.Dial(t, "/")
	second.DeclareQueue(t, cb, qb, kindB)
	second.Publish(t, cb, qb, nb)
	primary.WaitForCounts(t, "/", qa, int64(na), int64(na), 0, 30*time.Second)
	second.WaitForCounts(t, "/", qb, int64(nb), int64(nb), 0, 30*time.Second)
	return primary, second, qa, qb
}

// TestTwoBrokersOneExporter probes two real nodes with different credentials
// through one exporter using auth modules; swapping modules fails cleanly.
func TestTwoBrokersOneExporter(t *testing.T) {
	primary, second, qa, qb := queuesOnBothBrokers(t, "it.two.", testbed.Quorum, 2, 5)

	pa, _ := url.Parse(primary.MgmtURL)
	pb, _ := url.Parse(second.MgmtURL)
	dir := t.TempDir()
	pwB := filepath.Join(dir, "b.pw")
	if err := os.WriteFile(pwB, []byte(second.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`auth_modules:
  a:
    username: %s
    password: %s
    targets: ['127\.0\.0\.1:%s']
  b:
    username: %s
    password_file: %s
    targets: ['127\.0\.0\.1:%s']
  b_creds_everywhere:
    username: %s
    password_file: %s
    targets: ['127\.0\.0\.1:.*']
`, primary.User, primary.Password, pa.Port(), second.User, pwB, pb.Port(), second.User, pwB)), 0o600); err != nil {
		t.Fatal(err)
	}

	p := startExporter(t, []string{"RABBITMQ_PASSWORD=unused-env-secret"}, "--config.file="+cfg, "--no-metrics.queues")
	probe := func(target, module string) (response, map[string]float64) {
		// The longest timeout: a loaded second node lists slowly.
		res := p.get(t, "/probe?target="+url.QueryEscape(target)+"&auth_module="+module, timeoutHeader("120"))
		if res.status != 200 {
			return res, nil
		}
		return res, res.samples(t)
	}
	_, sa := probe(pa.Host, "a")
	_, sb := probe(pb.Host, "b")
	if sa["probe_success"] != 1 || sa[queueKey("rabbitmq_individual_queue_messages_ready", "127.0.0.1", "/", qa)] != 2 {
		t.Fatalf("module a on the primary: %v", sa)
	}
	if sb["probe_success"] != 1 || sb[queueKey("rabbitmq_individual_queue_messages", "127.0.0.1", "/", qb)] != 5 {
		t.Fatalf("module b on the second node: %v", sb)
	}
	if _, ok := sb[queueKey("rabbitmq_individual_queue_messages", "127.0.0.1", "/", qa)]; ok {
		t.Fatal("second node's scrape shows the primary's queue")
	}
	// Swapped: module a is not allowed for the second node at all (403, nothing sent);
	// the second node's credentials on the primary are rejected by RabbitMQ (401 -> probe_success 0).
	if res, _ := probe(pb.Host, "a"); res.status != 403 {
		t.Fatalf("module a on the second node: %d %s", res.status, res.body)
	}
	res, s := probe(pa.Host, "b_creds_everywhere")
	if s["probe_success"] != 0 || s[scrapetest.Key("rabbitmq_up", "host", "127.0.0.1")] != 0 || strings.Contains(res.body, "rabbitmq_individual_queue") {
		t.Fatalf("second node's credentials on the primary must fail cleanly:\n%s", res.body)
	}
	p.waitLog(t, "answered 401 Unauthorized")
	if strings.Contains(p.logs.String(), second.Password) || strings.Contains(p.logs.String(), "unused-env-secret") {
		t.Fatal("a password appeared in the log")
	}
}

// TestRealBrokerFailures: wrong password, a stopped (absent) broker and an
// unknown host all answer 200 with probe_success 0 and rabbitmq_up 0.
func TestRealBrokerFailures(t *testing.T) {
	b := testbed.Primary(t)
	mgmt, _ := url.Parse(b.MgmtURL)
	p := startExporter(t, []string{"RABBITMQ_HOST=" + mgmt.Host, "RABBITMQ_USER=" + b.User, "RABBITMQ_PASSWORD=definitely-wrong",
		"RABBITMQ_PROBE_ALLOWED_TARGETS=127\\.0\\.0\\.1:.*|no-such-host\\.invalid:.*"})
	closed := freePort(t)
	tests := []struct {
		name, target, host, log string
	}{
		{"wrong password", mgmt.Host, "127.0.0.1", "answered 401 Unauthorized"},
		{"stopped broker", closed, "127.0.0.1", "connection refused"},
		{"unknown host", "no-such-host.invalid", "no-such-host.invalid", "no such host"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := p.get(t, "/probe?target="+url.QueryEscape(tc.target), nil)
			s := res.samples(t)
			if res.status != 200 || s["probe_success"] != 0 || s[scrapetest.Key("rabbitmq_up", "host", tc.host)] != 0 {
				t.Fatalf("%d\n%s", res.status, res.body)
			}
			p.waitLog(t, tc.log)
		})
	}
	if strings.Contains(p.logs.String(), "definitely-wrong") {
		t.Fatal("password in log")
	}
}
