package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/scrapetest"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/testbed"
)

// clusterExporter runs the exporter against the test cluster's seed member
// with the plugin source; the members' plugin endpoints (localhost:15695-7,
// the last over TLS) are allowed, and the test CA verifies the TLS one.
func clusterExporter(t *testing.T, c testbed.ClusterInfo, source string, extra ...string) *exporterProc {
	t.Helper()
	return startExporter(t, []string{
		"RABBITMQ_HOST=" + c.Members[0].MgmtURL,
		"RABBITMQ_USER=" + testbed.ClusterUser,
		"RABBITMQ_PASSWORD=" + testbed.ClusterPassword,
		"RABBITMQ_SOURCE=" + source,
		`RABBITMQ_PROBE_ALLOWED_TARGETS=localhost:1569[5-7]`,
		"RABBITMQ_TLS_CA_FILE=" + testbed.ClusterCAFile,
	}, append([]string{"--no-metrics.queues"}, extra...)...)
}

// waitSamples probes until check accepts the samples, and returns them.
func waitSamples(t *testing.T, p *exporterProc, path string, timeout time.Duration, check func(map[string]float64) string) map[string]float64 {
	t.Helper()
	// timeout is what an idle machine needs; a busy one gets testbed.Patience.
	timeout = max(timeout, testbed.Patience)
	deadline := time.Now().Add(timeout)
	for {
		res := p.get(t, path, nil)
		s := res.samples(t)
		problem := check(s)
		if problem == "" {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s\n%s", timeout, problem, res.body)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func nodeUpKey(node string) string {
	return scrapetest.Key("rabbitmq_node_up", "host", "127.0.0.1", "node", node)
}

type clusterQueue struct {
	name                     string
	member                   int // whose leader it is
	kind                     string
	publish, hold            int
	messages, ready, unacked int64
}

// TestFaultPluginSourceRealCluster reads a real three-member cluster through each
// member's plugin: classic queues on every member, a quorum queue and a
// stream replicated over all, one member over TLS. Then one member's app
// stops: its classic queue has no sample, its node_up is 0, the rest stays
// exact, probe_success is 0; and after it starts again the same exporter
// process recovers.
func TestFaultPluginSourceRealCluster(t *testing.T) {
	testbed.RequireFaults(t, testbed.TestCluster)
	c := testbed.Cluster(t)
	vhost := testbed.UniqueName("it.plugin.")
	seed := c.Members[0]
	seed.CreateVhost(t, vhost)
	queues := []clusterQueue{
		{name: "classic.on3", member: 3, kind: testbed.Classic, publish: 5, messages: 5, ready: 5},
		{name: `classic "on4" \ ü`, member: 4, kind: testbed.Classic, publish: 3, hold: 1, messages: 3, ready: 2, unacked: 1},
		{name: "classic.on5", member: 5, kind: testbed.Classic, publish: 7, hold: 2, messages: 7, ready: 5, unacked: 2},
		{name: "quorum.led-by-4", member: 4, kind: testbed.Quorum, publish: 4, messages: 4, ready: 4},
	}
	for _, q := range queues {
		m := c.Member(q.member)
		if q.kind == testbed.Classic {
			cn := m.DeclareClassic(t, vhost, q.name)
			m.Publish(t, cn, q.name, q.publish)
			if q.hold > 0 {
				m.HoldUnacked(t, cn, q.name, q.hold)
			}
		} else {
			cn := m.DeclareReplicated(t, c, vhost, q.name, q.kind)
			m.Publish(t, cn, q.name, q.publish)
		}
	}
	stream := "stream.led-by-5"
	sc := c.Member(5).DeclareReplicated(t, c, vhost, stream, testbed.Stream)
	c.Member(5).Publish(t, sc, stream, 6)
	for _, q := range queues {
		seed.WaitForCounts(t, vhost, q.name, q.messages, q.ready, q.unacked, 30*time.Second)
	}

	p := clusterExporter(t, c, "prometheus")
	exact := func(s map[string]float64, skip int) string {
		for _, q := range queues {
			if q.member == skip && q.kind == testbed.Classic {
				continue
			}
			for metric, want := range map[string]int64{"rabbitmq_individual_queue_messages": q.messages, "rabbitmq_individual_queue_messages_ready": q.ready, "rabbitmq_individual_queue_messages_unacknowledged": q.unacked} {
				if got, ok := s[queueKey(metric, "127.0.0.1", vhost, q.name)]; !ok || got != float64(want) {
					return fmt.Sprintf("%s of %q = %v (present %v), want %d", metric, q.name, got, ok, want)
				}
			}
		}
		return ""
	}
	s := waitSamples(t, p, "/probe", 30*time.Second, func(s map[string]float64) string {
		if s["probe_success"] != 1 {
			return "probe_success is not 1"
		}
		for _, n := range c.Nodes() {
			if s[nodeUpKey(n)] != 1 {
				return n + " is not up"
			}
		}
		return exact(s, 0)
	})
	if s[scrapetest.Key("rabbitmq_source_info", "host", "127.0.0.1", "source", "prometheus")] != 1 {
		t.Fatalf("source_info: %v", s)
	}
	// The plugin reports streams (the lean management listing does not).
	if _, ok := s[queueKey("rabbitmq_individual_queue_messages", "127.0.0.1", vhost, stream)]; !ok {
		t.Errorf("the stream has no sample from the plugin source")
	}

	testbed.StopMember(t, 4)
	onFour := queues[1].name
	waitSamples(t, p, "/probe", 60*time.Second, func(s map[string]float64) string {
		if s[nodeUpKey("rabbit4@localhost")] != 0 || s["probe_success"] != 0 || s[scrapetest.Key("rabbitmq_up", "host", "127.0.0.1")] != 1 {
			return "rabbit4 not reported down yet"
		}
		if _, ok := s[queueKey("rabbitmq_individual_queue_messages", "127.0.0.1", vhost, onFour)]; ok {
			return "the stopped member's classic queue still has a sample"
		}
		if s[nodeUpKey("rabbit3@localhost")] != 1 || s[nodeUpKey("rabbit5@localhost")] != 1 {
			return "the other members must stay up"
		}
		// The quorum queue gets a new leader on a running member within seconds.
		return exact(s, 4)
	})

	testbed.StartMember(t, 4)
	waitSamples(t, p, "/probe", 90*time.Second, func(s map[string]float64) string {
		if s["probe_success"] != 1 || s[nodeUpKey("rabbit4@localhost")] != 1 {
			return "not recovered"
		}
		if _, ok := s[queueKey("rabbitmq_individual_queue_messages", "127.0.0.1", vhost, onFour)]; !ok {
			return "the restarted member's queue is back in no answer"
		}
		return ""
	})
	if err := p.stop(t); err != nil {
		t.Fatalf("exporter exit: %v", err)
	}
}

// TestPluginDisabledRealBroker: the second node serves no plugin. The auto
// source falls back to the management listing and stays exact; the
// prometheus source fails with a one-line reason.
func TestPluginDisabledRealBroker(t *testing.T) {
	second := testbed.Second(t)
	q := testbed.UniqueName("it.noplugin.")
	conn := second.Dial(t, "/")
	second.DeclareQueue(t, conn, q, testbed.Classic)
	second.Publish(t, conn, q, 3)
	second.WaitForCounts(t, "/", q, 3, 3, 0, 30*time.Second)
	host := strings.TrimPrefix(testbed.SecondMgmtURL, "http://")
	for _, source := range []string{"auto", "prometheus"} {
		t.Run(source, func(t *testing.T) {
			p := startExporter(t, []string{"RABBITMQ_HOST=" + host, "RABBITMQ_USER=" + second.User, "RABBITMQ_PASSWORD=" + second.Password, "RABBITMQ_SOURCE=" + source}, "--no-metrics.queues")
			// The exporter's longest timeout: under make test-under-load the
			// second node declares thousands of queues and its listing
			// takes longer than the 10 s default.
			res := p.get(t, "/probe", timeoutHeader("120"))
			s := res.samples(t)
			if source == "auto" {
				if s["probe_success"] != 1 || s[queueKey("rabbitmq_individual_queue_messages", "127.0.0.1", "/", q)] != 3 || s[scrapetest.Key("rabbitmq_source_info", "host", "127.0.0.1", "source", "management")] != 1 {
					t.Fatalf("auto must fall back to the management listing:\n%s", res.body)
				}
				p.waitLog(t, "read the management listing instead of the plugin")
				return
			}
			if s["probe_success"] != 0 || s[scrapetest.Key("rabbitmq_up", "host", "127.0.0.1")] != 0 || strings.Contains(res.body, q) {
				t.Fatalf("prometheus without the plugin must fail:\n%s", res.body)
			}
			p.waitLog(t, "lists no rabbitmq_prometheus listener")
		})
	}
}

// TestPluginEndpointNotAllowedRealCluster: a member whose discovered plugin
// endpoint is outside the allow-list is not contacted and counts as failed,
// with a log line naming the setting.
func TestPluginEndpointNotAllowedRealCluster(t *testing.T) {
	c := testbed.Cluster(t)
	p := startExporter(t, []string{
		"RABBITMQ_HOST=" + c.Members[0].MgmtURL, "RABBITMQ_USER=" + testbed.ClusterUser, "RABBITMQ_PASSWORD=" + testbed.ClusterPassword,
		"RABBITMQ_SOURCE=prometheus", `RABBITMQ_PROBE_ALLOWED_TARGETS=localhost:1569[56]`, "RABBITMQ_TLS_CA_FILE=" + testbed.ClusterCAFile,
	}, "--no-metrics.queues")
	s := p.get(t, "/probe", nil).samples(t)
	if s[nodeUpKey("rabbit5@localhost")] != 0 || s[nodeUpKey("rabbit3@localhost")] != 1 || s["probe_success"] != 0 {
		t.Fatalf("node_up: %v", s)
	}
	p.waitLog(t, "--probe.allowed-targets / RABBITMQ_PROBE_ALLOWED_TARGETS")
}
