package main

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/scrapetest"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/testbed"
)

// classicPerMember declares a classic queue on each cluster member in a
// fresh vhost, member i's holding i messages, and waits until the
// management API counts them. It returns the vhost and the queue names by
// member.
func classicPerMember(t *testing.T, c testbed.ClusterInfo, prefix string) (string, map[int]string) {
	t.Helper()
	vhost := testbed.UniqueName(prefix)
	seed := c.Members[0]
	seed.CreateVhost(t, vhost)
	names := map[int]string{}
	for _, m := range c.Members {
		name := fmt.Sprintf("classic.on%d", m.Index)
		conn := m.DeclareClassic(t, vhost, name)
		m.Publish(t, conn, name, m.Index)
		names[m.Index] = name
	}
	for i, name := range names {
		seed.WaitForCounts(t, vhost, name, int64(i), int64(i), 0, 30*time.Second)
	}
	return vhost, names
}

// memberQueuesExact checks that the queue of every member in up has its
// count and that the queues of the others have no sample at all.
func memberQueuesExact(s map[string]float64, vhost string, names map[int]string, up map[int]bool) string {
	return memberQueuesExactAt(s, "127.0.0.1", vhost, names, up)
}

// memberQueuesExactAt is memberQueuesExact for the exporter's host label.
func memberQueuesExactAt(s map[string]float64, host, vhost string, names map[int]string, up map[int]bool) string {
	for i, name := range names {
		got, ok := s[queueKey("rabbitmq_individual_queue_messages", host, vhost, name)]
		switch {
		case up[i] && (!ok || got != float64(i)):
			return fmt.Sprintf("%s of running member %d = %v (present %v), want %d", name, i, got, ok, i)
		case !up[i] && ok:
			return fmt.Sprintf("%s of member %d, which is out, has a sample (%v)", name, i, got)
		}
	}
	return ""
}

// nodesUpExact checks rabbitmq_node_up for every member and probe_success.
func nodesUpExact(s map[string]float64, c testbed.ClusterInfo, up map[int]bool) string {
	return nodesUpExactAt(s, "127.0.0.1", c, up)
}

// nodesUpExactAt is nodesUpExact for the exporter's host label.
func nodesUpExactAt(s map[string]float64, host string, c testbed.ClusterInfo, up map[int]bool) string {
	all := true
	for _, m := range c.Members {
		want := 0.0
		if up[m.Index] {
			want = 1
		} else {
			all = false
		}
		key := scrapetest.Key("rabbitmq_node_up", "host", host, "node", m.Node)
		if got, ok := s[key]; !ok || got != want {
			return fmt.Sprintf("rabbitmq_node_up of %s = %v (present %v), want %v", m.Node, got, ok, want)
		}
	}
	if want := map[bool]float64{true: 1, false: 0}[all]; s["probe_success"] != want {
		return fmt.Sprintf("probe_success = %v, want %v", s["probe_success"], want)
	}
	return ""
}

// TestFaultFrozenMember (issue 15, item 1): one member's VM is stopped
// (SIGSTOP), as a stalled VM or a silent partition looks from outside. The
// healthy members' management API then hangs, their plugins do not. Every
// probe through the plugin source answers within the scrape timeout with
// the other members' queues exact, rabbitmq_node_up 0 for the frozen one
// with a reason naming a timeout, and probe_success 0; the management
// source fails within the timeout with one reason; both recover once the
// member resumes.
func TestFaultFrozenMember(t *testing.T) {
	testbed.RequireFaults(t, testbed.TestCluster)
	c := testbed.Cluster(t)
	vhost, names := classicPerMember(t, c, "it.frozen.")
	p := clusterExporter(t, c, "prometheus")
	mgmt := clusterExporter(t, c, "management")
	allUp := map[int]bool{3: true, 4: true, 5: true}
	waitSamples(t, p, "/probe", 30*time.Second, func(s map[string]float64) string {
		if problem := nodesUpExact(s, c, allUp); problem != "" {
			return problem
		}
		return memberQueuesExact(s, vhost, names, allUp)
	})

	const scrapeTimeout = 8 * time.Second
	thaw := testbed.FreezeMember(t, 4)
	frozenUp := map[int]bool{3: true, 5: true}
	// The first probe reads with the cached member list; the second
	// discovers again (a member failed) and meets the hanging API.
	for i := range 2 {
		s, _, body := timedProbe(t, p, "127.0.0.1", fmt.Sprintf("rabbit4 frozen, probe %d", i+1), scrapeTimeout)
		for _, problem := range []string{nodesUpExact(s, c, frozenUp), memberQueuesExact(s, vhost, names, frozenUp)} {
			if problem != "" {
				t.Errorf("probe %d: %s\n%s", i+1, problem, body)
			}
		}
	}
	if !regexp.MustCompile(`node=rabbit4@localhost.*timed out`).MatchString(p.logs.String()) {
		t.Errorf("no log line names rabbit4 and a timeout:\n%s", p.logs)
	}
	managementFailsWithin(t, mgmt, "127.0.0.1", "rabbit4 frozen", scrapeTimeout)

	thaw()
	start := time.Now()
	waitSamples(t, p, "/probe", 60*time.Second, func(s map[string]float64) string {
		if problem := nodesUpExact(s, c, allUp); problem != "" {
			return problem
		}
		return memberQueuesExact(s, vhost, names, allUp)
	})
	t.Logf("plugin source exact again %v after the member resumed", time.Since(start).Round(time.Millisecond))
}

// timedProbe probes p with scrapeTimeout in the timeout header and checks
// what every probe with a member out must show: the answer within the
// timeout and rabbitmq_up 1 for host (the target itself answers).
func timedProbe(t *testing.T, p *exporterProc, host, what string, scrapeTimeout time.Duration) (s scrapetest.Samples, took time.Duration, body string) {
	t.Helper()
	start := time.Now()
	res := p.get(t, "/probe", timeoutHeader(fmt.Sprint(scrapeTimeout.Seconds())))
	took = time.Since(start)
	t.Logf("%s: probe took %v", what, took.Round(time.Millisecond))
	if took >= scrapeTimeout {
		t.Errorf("%s: the probe took %v, the whole scrape timeout", what, took)
	}
	s = res.samples(t)
	if s[scrapetest.Key("rabbitmq_up", "host", host)] != 1 {
		t.Fatalf("%s: rabbitmq_up is not 1:\n%s\nlog:\n%s", what, res.body, p.logs)
	}
	return s, took, res.body
}

// managementFailsWithin probes mgmt (the management source) once while the
// cluster's API hangs: it cannot do better than fail within the scrape
// timeout, with rabbitmq_up 0, probe_success 0 and one log line.
func managementFailsWithin(t *testing.T, mgmt *exporterProc, host, what string, scrapeTimeout time.Duration) {
	t.Helper()
	start := time.Now()
	res := mgmt.get(t, "/probe", timeoutHeader(fmt.Sprint(scrapeTimeout.Seconds())))
	took := time.Since(start)
	t.Logf("management source probe with %s: %v", what, took.Round(time.Millisecond))
	s := res.samples(t)
	if up := s[scrapetest.Key("rabbitmq_up", "host", host)]; took >= scrapeTimeout || s["probe_success"] != 0 || up != 0 {
		t.Errorf("management source with %s: took %v, probe_success %v, rabbitmq_up %v", what, took, s["probe_success"], up)
	}
	mgmt.waitLog(t, "timed out before the listing completed")
	if n := strings.Count(mgmt.logs.String(), "listing queues failed"); n != 1 {
		t.Errorf("%d failure lines for one management probe:\n%s", n, mgmt.logs)
	}
}
