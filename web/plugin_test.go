package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/fakeapi"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/scrapetest"
)

// fakeMember is one member of a fake cluster: a plugin listener that counts
// requests and records whether any carried credentials.
type fakeMember struct {
	name     string
	running  bool
	plugin   bool // lists a prometheus context
	srv      *httptest.Server
	queues   []fakeapi.PluginQueue
	style    fakeapi.PluginStyle
	requests atomic.Int32
	authSeen atomic.Bool
	status   int // non-zero: answer this status
	port     int // listed port (defaults to srv's)
}

func (m *fakeMember) serve(w http.ResponseWriter, r *http.Request) {
	m.requests.Add(1)
	if r.Header.Get("Authorization") != "" {
		m.authSeen.Store(true)
	}
	if r.URL.Path != "/metrics/detailed" || r.URL.Query().Get("family") != "queue_coarse_metrics" {
		http.NotFound(w, r)
		return
	}
	if m.status != 0 {
		w.WriteHeader(m.status)
		return
	}
	style := m.style
	if style == "" {
		style = fakeapi.PluginEscaped
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	w.Write(fakeapi.RenderPlugin(style, m.queues, fakeapi.DefaultPluginInfo(style)))
}

// fakeCluster serves the management API (/api/nodes, /api/queues) on one
// listener and each member's plugin on its own.
type fakeCluster struct {
	mgmt            *httptest.Server
	members         []*fakeMember
	nodesRequests   atomic.Int32
	queuesRequests  atomic.Int32
	managementQueue string          // /api/queues body
	hideVhosts      map[string]bool // left out of /api/vhosts
	extraVhosts     []string        // listed in /api/vhosts besides the queues' vhosts
	queuesStatus    int             // non-zero: /api/queues answers this status
}

func newFakeCluster(t *testing.T, members ...*fakeMember) *fakeCluster {
	t.Helper()
	c := &fakeCluster{members: members}
	for _, m := range members {
		m.srv = httptest.NewServer(http.HandlerFunc(m.serve))
		t.Cleanup(m.srv.Close)
		if m.port == 0 {
			u, _ := url.Parse(m.srv.URL)
			m.port, _ = strconv.Atoi(u.Port())
		}
	}
	c.mgmt = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "monitor" || p != testPassword {
			http.Error(w, `{"error":"not_authorised","reason":"Login failed"}`, http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/api/nodes":
			c.nodesRequests.Add(1)
			var nodes []map[string]any
			for _, m := range c.members {
				n := map[string]any{"name": m.name, "running": m.running}
				ctxs := []map[string]any{{"description": "RabbitMQ Management", "port": "15672"}}
				if m.plugin && m.running {
					ctxs = append(ctxs, map[string]any{"description": "RabbitMQ Prometheus", "port": strconv.Itoa(m.port), "protocol": "'http/prometheus'"})
				}
				if m.running {
					n["contexts"] = ctxs
				}
				nodes = append(nodes, n)
			}
			_ = json.NewEncoder(w).Encode(nodes)
		case "/api/vhosts":
			seen := map[string]bool{}
			var vhosts []map[string]string
			for _, m := range c.members {
				for _, q := range m.queues {
					if !seen[q.Vhost] && !c.hideVhosts[q.Vhost] {
						seen[q.Vhost] = true
						vhosts = append(vhosts, map[string]string{"name": q.Vhost})
					}
				}
			}
			for _, v := range c.extraVhosts {
				vhosts = append(vhosts, map[string]string{"name": v})
			}
			_ = json.NewEncoder(w).Encode(vhosts)
		case "/api/queues":
			c.queuesRequests.Add(1)
			if c.queuesStatus != 0 {
				http.Error(w, `{"error":"timeout"}`, c.queuesStatus)
				return
			}
			io := c.managementQueue
			if io == "" {
				io = "[]"
			}
			w.Write([]byte(io))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(c.mgmt.Close)
	return c
}

func (c *fakeCluster) handler(t *testing.T, source, allowed string) (*Handler, *scrapetest.LockedBuffer) {
	t.Helper()
	user, pw := "monitor", testPassword
	u, _ := url.Parse(c.mgmt.URL)
	return newHandler(t, config.EnvFlags{Host: u.Host, User: &user, Password: &pw, Source: source, AllowedTargets: allowed}, "")
}

func pq(vhost, name string, ready, unacked int64) fakeapi.PluginQueue {
	return fakeapi.PluginQueue{Vhost: vhost, Name: name, Ready: ready, Unacked: unacked, Messages: ready + unacked, Reductions: 7}
}

const anyLocal = `127\.0\.0\.1:\d+`

func TestPluginSourceMergesMembers(t *testing.T) {
	a := &fakeMember{name: "rabbit@127.0.0.1", running: true, plugin: true, queues: []fakeapi.PluginQueue{pq("/", "a1", 3, 1), pq("v", `q "quoted" \ name`, 2, 0)}}
	b := &fakeMember{name: "rabbit-b@127.0.0.1", running: true, plugin: true, style: fakeapi.PluginRaw, queues: []fakeapi.PluginQueue{pq("/", "b1", 5, 5)}}
	c := newFakeCluster(t, a, b)
	h, _ := c.handler(t, "prometheus", anyLocal)
	res := doScrape(t, h.Probe, "", nil)
	want := map[string]float64{
		"probe_success": 1, hostKey("rabbitmq_up"): 1, hostKey("rabbitmq_queues"): 3,
		queueKey("rabbitmq_individual_queue_messages", "/", "a1"):                      4,
		queueKey("rabbitmq_individual_queue_messages_ready", "v", `q "quoted" \ name`): 2,
		queueKey("rabbitmq_individual_queue_messages_unacknowledged", "/", "b1"):       5,
	}
	for k, v := range want {
		if res.samples[k] != v {
			t.Errorf("%s = %v, want %v", k, res.samples[k], v)
		}
	}
	for _, s := range []string{`rabbitmq_node_up{host="127.0.0.1",node="rabbit@127.0.0.1"} 1`, `rabbitmq_node_up{host="127.0.0.1",node="rabbit-b@127.0.0.1"} 1`, `rabbitmq_source_info{host="127.0.0.1",source="prometheus"} 1`} {
		if !strings.Contains(res.body, s) {
			t.Errorf("answer lacks %s", s)
		}
	}
	if c.queuesRequests.Load() != 0 {
		t.Error("the management listing was read")
	}
	if a.authSeen.Load() || b.authSeen.Load() {
		t.Error("credentials were sent to a plugin endpoint")
	}
	// The member list is reused for a while.
	doScrape(t, h.Probe, "", nil)
	if c.nodesRequests.Load() != 1 || a.requests.Load() != 2 {
		t.Errorf("discovery %d times, member a read %d times; want 1 and 2", c.nodesRequests.Load(), a.requests.Load())
	}
}

func TestPluginSourceMemberDown(t *testing.T) {
	a := &fakeMember{name: "rabbit@127.0.0.1", running: true, plugin: true, queues: []fakeapi.PluginQueue{pq("/", "a1", 3, 1)}}
	b := &fakeMember{name: "rabbit-b@127.0.0.1", running: false, plugin: true, queues: []fakeapi.PluginQueue{pq("/", "b1", 5, 5)}}
	refused := &fakeMember{name: "rabbit-c@127.0.0.1", running: true, plugin: true}
	c := newFakeCluster(t, a, b, refused)
	refused.srv.Close() // listed as running, but its plugin refuses connections
	h, logs := c.handler(t, "prometheus", anyLocal)
	res := doScrape(t, h.Probe, "", nil)
	if res.samples["probe_success"] != 0 || res.samples[hostKey("rabbitmq_up")] != 1 {
		t.Fatalf("want probe_success 0 and rabbitmq_up 1:\n%s", res.body)
	}
	if res.samples[queueKey("rabbitmq_individual_queue_messages", "/", "a1")] != 4 {
		t.Errorf("the running member's queue is missing:\n%s", res.body)
	}
	if _, ok := res.samples[queueKey("rabbitmq_individual_queue_messages", "/", "b1")]; ok {
		t.Error("a queue of a down member has a sample")
	}
	for _, s := range []string{`rabbitmq_node_up{host="127.0.0.1",node="rabbit-b@127.0.0.1"} 0`, `rabbitmq_node_up{host="127.0.0.1",node="rabbit-c@127.0.0.1"} 0`, `rabbitmq_node_up{host="127.0.0.1",node="rabbit@127.0.0.1"} 1`} {
		if !strings.Contains(res.body, s) {
			t.Errorf("answer lacks %s:\n%s", s, res.body)
		}
	}
	if !strings.Contains(logs.String(), "connection refused") {
		t.Errorf("log lacks the refused member's reason:\n%s", logs)
	}
	// A failed member makes the next scrape discover again.
	doScrape(t, h.Probe, "", nil)
	if c.nodesRequests.Load() != 2 {
		t.Errorf("discovery ran %d times, want 2", c.nodesRequests.Load())
	}
}

func TestPluginDisabled(t *testing.T) {
	a := &fakeMember{name: "rabbit@127.0.0.1", running: true, plugin: false}
	c := newFakeCluster(t, a)
	c.managementQueue = `[{"name":"q","vhost":"/","messages":2,"messages_ready":2,"messages_unacknowledged":0}]`

	h, logs := c.handler(t, "prometheus", anyLocal)
	res := doScrape(t, h.Probe, "", nil)
	if res.samples["probe_success"] != 0 || res.samples[hostKey("rabbitmq_up")] != 0 {
		t.Fatalf("prometheus source without the plugin must fail:\n%s", res.body)
	}
	if !regexp.MustCompile(`listing queues failed.*lists no rabbitmq_prometheus listener in /api/nodes \(not yet reporting its listeners, or the plugin is not enabled on it\)`).MatchString(logs.String()) {
		t.Errorf("log lacks the reason:\n%s", logs)
	}

	h, _ = c.handler(t, "auto", anyLocal)
	res = doScrape(t, h.Probe, "", nil)
	if res.samples["probe_success"] != 1 || res.samples[queueKey("rabbitmq_individual_queue_messages", "/", "q")] != 2 || !strings.Contains(res.body, `source="management"`) {
		t.Fatalf("auto must fall back to the management listing:\n%s", res.body)
	}
}

// TestAutoAnswersWithTheMembersRead: a member listed as running whose
// plugin refuses (it stops or starts) sends auto to the management
// listing; when that fails too, the probe answers with the members read,
// the missing one not up and the scrape not a success. When the management
// listing works, it serves, as before.
func TestAutoAnswersWithTheMembersRead(t *testing.T) {
	a := &fakeMember{name: "rabbit@127.0.0.1", running: true, plugin: true, queues: []fakeapi.PluginQueue{pq("/", "a1", 3, 1)}}
	refused := &fakeMember{name: "rabbit-c@127.0.0.1", running: true, plugin: true}
	c := newFakeCluster(t, a, refused)
	refused.srv.Close()
	c.queuesStatus = http.StatusServiceUnavailable
	h, logs := c.handler(t, "auto", anyLocal)
	res := doScrape(t, h.Probe, "", nil)
	if res.samples["probe_success"] != 0 || res.samples[hostKey("rabbitmq_up")] != 1 || !strings.Contains(res.body, `source="prometheus"`) {
		t.Fatalf("want the members read, probe_success 0, rabbitmq_up 1:\n%s", res.body)
	}
	if res.samples[queueKey("rabbitmq_individual_queue_messages", "/", "a1")] != 4 {
		t.Errorf("the running member's queue is missing:\n%s", res.body)
	}
	for _, s := range []string{`rabbitmq_node_up{host="127.0.0.1",node="rabbit-c@127.0.0.1"} 0`, `rabbitmq_node_up{host="127.0.0.1",node="rabbit@127.0.0.1"} 1`} {
		if !strings.Contains(res.body, s) {
			t.Errorf("answer lacks %s:\n%s", s, res.body)
		}
	}
	if c.queuesRequests.Load() != 1 || !regexp.MustCompile(`the management listing failed too.*503`).MatchString(logs.String()) {
		t.Errorf("%d management listings; want 1, and the log to say it failed:\n%s", c.queuesRequests.Load(), logs)
	}

	c.queuesStatus = 0
	c.managementQueue = `[{"name":"a1","vhost":"/","messages":4,"messages_ready":3,"messages_unacknowledged":1}]`
	res = doScrape(t, h.Probe, "", nil)
	if res.samples["probe_success"] != 1 || !strings.Contains(res.body, `source="management"`) || res.samples[queueKey("rabbitmq_individual_queue_messages", "/", "a1")] != 4 {
		t.Errorf("a working management listing serves auto:\n%s", res.body)
	}
}

// TestDiscoveredEndpointOutsideAllowList: an address the allow-list does not
// cover receives no request, whatever /api/nodes says.
func TestDiscoveredEndpointOutsideAllowList(t *testing.T) {
	allowed := &fakeMember{name: "rabbit@127.0.0.1", running: true, plugin: true, queues: []fakeapi.PluginQueue{pq("/", "a1", 1, 0)}}
	stranger := &fakeMember{name: "rabbit-x@127.0.0.1", running: true, plugin: true, queues: []fakeapi.PluginQueue{pq("/", "x1", 1, 0)}}
	c := newFakeCluster(t, allowed, stranger)
	h, logs := c.handler(t, "prometheus", `127\.0\.0\.1:`+strconv.Itoa(allowed.port))
	res := doScrape(t, h.Probe, "", nil)
	if stranger.requests.Load() != 0 {
		t.Fatalf("the endpoint outside the allow-list got %d requests", stranger.requests.Load())
	}
	if !strings.Contains(res.body, `rabbitmq_node_up{host="127.0.0.1",node="rabbit-x@127.0.0.1"} 0`) || res.samples["probe_success"] != 0 {
		t.Errorf("the refused member must count as failed:\n%s", res.body)
	}
	if !strings.Contains(logs.String(), "--probe.allowed-targets / RABBITMQ_PROBE_ALLOWED_TARGETS") {
		t.Errorf("log does not name the setting:\n%s", logs)
	}
}

// TestAmbiguousAnswerFallsBack: a raw answer whose names forge lines is never
// used; the scrape reads the management listing instead.
func TestAmbiguousAnswerFallsBack(t *testing.T) {
	forged := "x\"} 5\nrabbitmq_detailed_queue_messages{vhost=\"/\",queue=\"victim"
	a := &fakeMember{name: "rabbit@127.0.0.1", running: true, plugin: true, style: fakeapi.PluginRaw, queues: []fakeapi.PluginQueue{pq("/", forged, 1, 0), pq("/", "victim", 9, 0)}}
	c := newFakeCluster(t, a)
	c.managementQueue = `[{"name":"victim","vhost":"/","messages":9,"messages_ready":9,"messages_unacknowledged":0}]`
	h, logs := c.handler(t, "prometheus", anyLocal)
	res := doScrape(t, h.Probe, "", nil)
	if res.samples["probe_success"] != 1 || !strings.Contains(res.body, `source="management"`) || res.samples[queueKey("rabbitmq_individual_queue_messages", "/", "victim")] != 9 {
		t.Fatalf("want the management listing:\n%s", res.body)
	}
	if _, ok := res.samples[queueKey("rabbitmq_individual_queue_messages", "/", "x")]; ok {
		t.Fatal("a forged queue was exported")
	}
	if !strings.Contains(logs.String(), "read the management listing instead of the plugin") {
		t.Errorf("log lacks the fallback:\n%s", logs)
	}
}

// TestVhostListResolvesOddNames: a queue named with `",queue="` makes an
// unescaped answer read two ways; the vhost list tells which is right.
func TestVhostListResolvesOddNames(t *testing.T) {
	a := &fakeMember{name: "rabbit@127.0.0.1", running: true, plugin: true, style: fakeapi.PluginRaw, queues: []fakeapi.PluginQueue{pq("v", `x",queue="evil`, 2, 1), pq("v", "plain", 1, 0)}}
	c := newFakeCluster(t, a)
	h, _ := c.handler(t, "prometheus", anyLocal)
	res := doScrape(t, h.Probe, "", nil)
	if !strings.Contains(res.body, `source="prometheus"`) || res.samples[queueKey("rabbitmq_individual_queue_messages", "v", `x",queue="evil`)] != 3 {
		t.Fatalf("want the plugin's reading of the odd name:\n%s", res.body)
	}
}

func TestPluginEndpointsConfigured(t *testing.T) {
	a := &fakeMember{name: "unused", queues: []fakeapi.PluginQueue{pq("/", "a1", 1, 1)}}
	c := newFakeCluster(t, a)
	user, pw := "monitor", testPassword
	u, _ := url.Parse(c.mgmt.URL)
	h, _ := newHandler(t, config.EnvFlags{Host: u.Host, User: &user, Password: &pw, Source: "prometheus", PluginEndpoints: a.srv.URL}, "")
	res := doScrape(t, h.Probe, "", nil)
	if res.samples[queueKey("rabbitmq_individual_queue_messages", "/", "a1")] != 2 || c.nodesRequests.Load() != 0 {
		t.Fatalf("configured endpoint not used (discovery ran %d times):\n%s", c.nodesRequests.Load(), res.body)
	}
	if !strings.Contains(res.body, fmt.Sprintf(`node="127.0.0.1:%d"`, a.port)) {
		t.Errorf("node label should be the endpoint:\n%s", res.body)
	}
}

func TestPluginConcurrentScrapesShare(t *testing.T) {
	gate := make(chan struct{})
	a := &fakeMember{name: "rabbit@127.0.0.1", running: true, plugin: true, queues: []fakeapi.PluginQueue{pq("/", "a1", 1, 1)}}
	c := newFakeCluster(t, a)
	inner := a.srv.Config.Handler
	a.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-gate; inner.ServeHTTP(w, r) })
	h, _ := c.handler(t, "prometheus", anyLocal)
	done := make(chan scrape, 6)
	for range 6 {
		go func() { done <- doScrape(t, h.Probe, "", nil) }()
	}
	time.Sleep(200 * time.Millisecond)
	close(gate)
	for range 6 {
		if r := <-done; r.samples["probe_success"] != 1 {
			t.Errorf("probe failed:\n%s", r.body)
		}
	}
	if a.requests.Load() != 1 || c.nodesRequests.Load() != 1 {
		t.Fatalf("%d plugin and %d discovery requests for 6 concurrent scrapes, want 1 and 1", a.requests.Load(), c.nodesRequests.Load())
	}
}
