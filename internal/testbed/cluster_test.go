package testbed

import (
	"bytes"
	"fmt"
	"net/url"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

const coarsePath = "/metrics/detailed?family=queue_coarse_metrics"

// TestClusterMembers: every member sees all three running, each with a context naming
// its plugin listener as the helpers describe it, and every plugin answers.
func TestClusterMembers(t *testing.T) {
	c := Cluster(t)
	if len(c.Members) != 3 {
		t.Fatalf("%d members, want 3", len(c.Members))
	}
	for _, observer := range c.Members {
		nodes := observer.Nodes(t)
		if len(nodes) != len(c.Members) {
			t.Errorf("%s lists %d nodes, want %d: %v", observer.Node, len(nodes), len(c.Members), nodes)
		}
		for _, m := range c.Members {
			n, ok := nodes[m.Node]
			if !ok || !n.Running {
				t.Errorf("%s: %s listed %v, running %v", observer.Node, m.Node, ok, n.Running)
				continue
			}
			p := n.Plugin()
			if p == nil {
				t.Errorf("%s: no prometheus context for %s: %+v", observer.Node, m.Node, n.Contexts)
				continue
			}
			u, err := url.Parse(m.PluginURL)
			if err != nil {
				t.Fatal(err)
			}
			// 3.10 quotes the protocol atom: 'http/prometheus'.
			wantProto := u.Scheme + "/prometheus"
			if strings.Trim(p.Protocol, "'") != wantProto || p.Port != u.Port() {
				t.Errorf("%s: %s context protocol %q port %q, want %s port %s",
					observer.Node, m.Node, p.Protocol, p.Port, wantProto, u.Port())
			}
		}
	}
	for _, m := range c.Members {
		// Filtered to a vhost that does not exist: 3.10 writes names unescaped,
		// and other tests' odd names elsewhere would not parse strictly.
		body := m.Scrape(t, coarsePath+"&vhost=no-such-vhost-"+UniqueName(""))
		families := parseExposition(t, body)
		id := families["rabbitmq_identity_info"]
		if id == nil || len(id.GetMetric()) != 1 || label(id.GetMetric()[0], "rabbitmq_node") != m.Node {
			t.Errorf("%s: rabbitmq_identity_info does not name the member: %v", m.PluginURL, id)
		}
		// A member leading no queue still announces the family (without samples,
		// which the parser drops).
		if !bytes.Contains(body, []byte("\n# TYPE rabbitmq_detailed_queue_messages gauge\n")) &&
			!bytes.HasPrefix(body, []byte("# TYPE rabbitmq_detailed_queue_messages gauge\n")) {
			t.Errorf("%s: no rabbitmq_detailed_queue_messages family: %s", m.PluginURL, snippet(body))
		}
	}
}

// TestClusterQueuePerMember: a classic queue declared on each member shows up, with
// its counts, in exactly that member's plugin answer.
func TestClusterQueuePerMember(t *testing.T) {
	c := Cluster(t)
	seed := c.Members[0]
	vhost := UniqueName("cluster-")
	seed.CreateVhost(t, vhost)
	wants := map[string]coarse{} // queue -> counts
	owner := map[string]string{}
	for i, m := range c.Members {
		name := UniqueName(fmt.Sprintf("on-%d-", m.Index))
		conn := m.DeclareClassic(t, vhost, name)
		m.Publish(t, conn, name, 3+i)
		m.HoldUnacked(t, conn, name, 1)
		wants[name] = coarse{messages: float64(3 + i), ready: float64(2 + i), unacked: 1}
		owner[name] = m.Node
	}
	for _, m := range c.Members {
		// The plugin reads counts the queues report every 5 s.
		var last map[string]coarse
		_ = Await(t, m.Node+"'s plugin to report the counts of its queues only", Patience, func() error {
			last = coarseCounts(t, m.Scrape(t, coarsePath+"&vhost="+url.QueryEscape(vhost)), vhost)
			for q, w := range wants {
				got, listed := last[q]
				if listed != (owner[q] == m.Node) || listed && got != w {
					return fmt.Errorf("%q: listed %v, counts %+v", q, listed, got)
				}
			}
			return nil
		})
		for q, w := range wants {
			got, listed := last[q]
			switch {
			case owner[q] != m.Node && listed:
				t.Errorf("%s lists %q of %s", m.Node, q, owner[q])
			case owner[q] == m.Node && !listed:
				t.Errorf("%s does not list its queue %q", m.Node, q)
			case owner[q] == m.Node && got != w:
				t.Errorf("%s: %q counts %+v, want %+v", m.Node, q, got, w)
			}
		}
	}
}

// TestClusterReplicatedPlacement: the helpers place quorum queues and streams with
// their leader on the chosen member and a replica on every member.
func TestClusterReplicatedPlacement(t *testing.T) {
	c := Cluster(t)
	vhost := UniqueName("cluster-repl-")
	c.Members[0].CreateVhost(t, vhost)
	m := c.Member(4)
	var names []string
	for _, kind := range []string{Quorum, Stream} {
		name := UniqueName(kind + "-")
		conn := m.DeclareReplicated(t, c, vhost, name, kind)
		m.Publish(t, conn, name, 2)
		names = append(names, name)
	}
	for _, name := range names {
		m.WaitForCounts(t, vhost, name, 2, 2, 0, Patience)
	}
}

// coarse is one queue's counts in a queue_coarse_metrics answer.
type coarse struct{ messages, ready, unacked float64 }

func parseExposition(t testing.TB, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing plugin answer: %v\n%s", err, snippet(body))
	}
	return families
}

// coarseCounts returns the three message counts per queue of vhost.
func coarseCounts(t testing.TB, body []byte, vhost string) map[string]coarse {
	t.Helper()
	out := map[string]coarse{}
	families := parseExposition(t, body)
	for name, set := range map[string]func(*coarse, float64){
		"rabbitmq_detailed_queue_messages":         func(c *coarse, v float64) { c.messages = v },
		"rabbitmq_detailed_queue_messages_ready":   func(c *coarse, v float64) { c.ready = v },
		"rabbitmq_detailed_queue_messages_unacked": func(c *coarse, v float64) { c.unacked = v },
	} {
		for _, s := range families[name].GetMetric() {
			if label(s, "vhost") != vhost {
				continue
			}
			q := label(s, "queue")
			c := out[q]
			set(&c, s.GetGauge().GetValue())
			out[q] = c
		}
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
