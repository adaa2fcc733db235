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

// TestFaultNamespacedMemberLinkDown (issue 15, item 4): the members of
// scripts/netns-cluster.sh run on their own addresses and host names, so the
// exporter finds rabbit7@m7 in /api/nodes and reads its plugin at m7:15692,
// as in production. Then m7's link drops every packet: connections to it
// neither fail nor answer, and m6's management API hangs as it waits for
// m7. Every probe through the plugin source answers within the scrape
// timeout with m6's queue exact, rabbitmq_node_up 0 for rabbit7@m7 with a
// reason naming a timeout, and probe_success 0; once the link carries
// packets again the same exporter recovers. The management source fails
// within the timeout with one reason. (Added latency, the other
// fault of item 4, needs tc netem, which this machine's kernel lacks.)
func TestFaultNamespacedMemberLinkDown(t *testing.T) {
	testbed.RequireFaults(t, testbed.NamespacedCluster)
	c := testbed.NetnsCluster(t)
	const host = "m6" // the exporter's host label: RABBITMQ_HOST's host
	vhost, names := classicPerMember(t, c, "it.netns.")
	p := startExporter(t, []string{
		"RABBITMQ_HOST=" + c.Members[0].MgmtURL,
		"RABBITMQ_USER=" + testbed.ClusterUser,
		"RABBITMQ_PASSWORD=" + testbed.ClusterPassword,
		"RABBITMQ_SOURCE=prometheus",
		// Names, not addresses: the plugin endpoints are the members' host
		// names from /api/nodes.
		`RABBITMQ_PROBE_ALLOWED_TARGETS=m[67]:15692`,
	}, "--no-metrics.queues")
	mgmt := startExporter(t, []string{
		"RABBITMQ_HOST=" + c.Members[0].MgmtURL,
		"RABBITMQ_USER=" + testbed.ClusterUser,
		"RABBITMQ_PASSWORD=" + testbed.ClusterPassword,
		"RABBITMQ_SOURCE=management",
	}, "--no-metrics.queues")
	exact := func(up map[int]bool) func(map[string]float64) string {
		return func(s map[string]float64) string {
			if problem := nodesUpExactAt(s, host, c, up); problem != "" {
				return problem
			}
			return memberQueuesExactAt(s, host, vhost, names, up)
		}
	}
	allUp := map[int]bool{6: true, 7: true}
	waitSamples(t, p, "/probe", 30*time.Second, exact(allUp))

	const scrapeTimeout = 8 * time.Second
	header := timeoutHeader(fmt.Sprint(scrapeTimeout.Seconds()))
	restore := testbed.DropLink(t, 7)
	droppedUp := map[int]bool{6: true}
	// The first probe reads with the cached member list; the second
	// discovers again (a member failed) and meets m6's hanging API.
	for i := range 2 {
		start := time.Now()
		res := p.get(t, "/probe", header)
		took := time.Since(start)
		t.Logf("probe %d with m7's link down: %v", i+1, took.Round(time.Millisecond))
		if took >= scrapeTimeout {
			t.Errorf("probe %d took %v, the whole scrape timeout", i+1, took)
		}
		s := res.samples(t)
		if s[scrapetest.Key("rabbitmq_up", "host", host)] != 1 {
			t.Fatalf("probe %d: rabbitmq_up is not 1:\n%s\nlog:\n%s", i+1, res.body, p.logs)
		}
		if problem := exact(droppedUp)(s); problem != "" {
			t.Errorf("probe %d: %s\n%s", i+1, problem, res.body)
		}
	}
	if !regexp.MustCompile(`node=rabbit7@m7.*timed out`).MatchString(p.logs.String()) {
		t.Errorf("no log line names rabbit7@m7 and a timeout:\n%s", p.logs)
	}
	// The management source cannot do better: m6's API waits for m7.
	start := time.Now()
	res := mgmt.get(t, "/probe", header)
	took := time.Since(start)
	t.Logf("management source probe with m7's link down: %v", took.Round(time.Millisecond))
	s := res.samples(t)
	if up := s[scrapetest.Key("rabbitmq_up", "host", host)]; took >= scrapeTimeout || s["probe_success"] != 0 || up != 0 {
		t.Errorf("management source: took %v, probe_success %v, rabbitmq_up %v", took, s["probe_success"], up)
	}
	mgmt.waitLog(t, "timed out before the listing completed")
	if n := strings.Count(mgmt.logs.String(), "listing queues failed"); n != 1 {
		t.Errorf("%d failure lines for one management probe:\n%s", n, mgmt.logs)
	}

	restore()
	start = time.Now()
	waitSamples(t, p, "/probe", 60*time.Second, exact(allUp))
	t.Logf("plugin source exact again %v after the link was restored", time.Since(start).Round(time.Millisecond))
}
