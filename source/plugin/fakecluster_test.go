package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/brokerhttp"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/fakeapi"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source"
)

// fakeNode is one member of a fake cluster: its plugin listener, what
// /api/nodes says of it, and what it went through.
type fakeNode struct {
	name     string
	running  bool
	contexts bool // /api/nodes lists its prometheus listener
	port     int  // listed port (0: its own listener's)
	queues   []fakeapi.PluginQueue
	body     []byte // answered instead of queues' rendering when set
	raw      bool   // answer as the raw versions (3.10) do

	srv      *httptest.Server
	hang     atomic.Bool // the plugin accepts and never answers
	requests atomic.Int32
	inflight inflight
	authSeen atomic.Bool
	slow     time.Duration // each answer waits this long (to overlap reads)
}

// fakeBroker serves the management API and one plugin listener per node.
type fakeBroker struct {
	t       *testing.T
	mgmt    *httptest.Server
	mu      sync.Mutex
	nodes   []*fakeNode
	vhosts  []string
	hangAPI atomic.Bool // /api/nodes and /api/vhosts never answer
	release chan struct{}

	nodesRequests, vhostsRequests atomic.Int32
}

const (
	fakeUser     = "monitor"
	fakePassword = "fake-secret-pw"
)

func (b *fakeBroker) wait(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-b.release:
	}
}

func (b *fakeBroker) servePlugin(n *fakeNode) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n.requests.Add(1)
		if r.Header.Get("Authorization") != "" {
			n.authSeen.Store(true)
		}
		if n.hang.Load() {
			b.wait(r)
			return
		}
		if n.slow > 0 {
			time.Sleep(n.slow)
		}
		body := n.body
		if body == nil {
			style := fakeapi.PluginEscaped
			if n.raw {
				style = fakeapi.PluginRaw
			}
			info := fakeapi.DefaultPluginInfo(style)
			info.Node = n.name
			body = fakeapi.RenderPlugin(style, n.queues, info)
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Write(body)
	}
}

// newFakeBroker starts the nodes' plugins (on listen, "127.0.0.1:0" when
// empty) and the management API.
func newFakeBroker(t *testing.T, nodes ...*fakeNode) *fakeBroker {
	t.Helper()
	b := &fakeBroker{t: t, nodes: nodes, release: make(chan struct{}), vhosts: []string{"/"}}
	for _, n := range nodes {
		b.startPlugin(n, "127.0.0.1:0")
	}
	b.mgmt = httptest.NewServer(http.HandlerFunc(b.serveAPI))
	t.Cleanup(b.mgmt.Close)
	t.Cleanup(func() { close(b.release) }) // runs first: hung handlers return
	return b
}

func (b *fakeBroker) startPlugin(n *fakeNode, addr string) {
	b.t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		b.t.Fatal(err)
	}
	n.srv = httptest.NewUnstartedServer(n.inflight.wrap(b.servePlugin(n)))
	n.srv.Listener.Close()
	n.srv.Listener = l
	n.srv.Start()
	b.t.Cleanup(n.srv.Close)
	if n.port == 0 {
		n.port = l.Addr().(*net.TCPAddr).Port
	}
}

func (b *fakeBroker) serveAPI(w http.ResponseWriter, r *http.Request) {
	if u, p, ok := r.BasicAuth(); !ok || u != fakeUser || p != fakePassword {
		http.Error(w, `{"error":"not_authorised","reason":"Login failed"}`, http.StatusUnauthorized)
		return
	}
	switch r.URL.Path {
	case "/api/nodes":
		b.nodesRequests.Add(1)
	case "/api/vhosts":
		b.vhostsRequests.Add(1)
	}
	if b.hangAPI.Load() {
		b.wait(r)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch r.URL.Path {
	case "/api/nodes":
		var nodes []map[string]any
		for _, n := range b.nodes {
			o := map[string]any{"name": n.name, "running": n.running}
			if n.running {
				ctxs := []map[string]any{{"description": "RabbitMQ Management", "port": "15672", "protocol": "'http'"}}
				if n.contexts {
					ctxs = append(ctxs, map[string]any{"description": "RabbitMQ Prometheus", "port": strconv.Itoa(n.port), "protocol": "'http/prometheus'"})
				}
				o["contexts"] = ctxs
			}
			nodes = append(nodes, o)
		}
		_ = json.NewEncoder(w).Encode(nodes)
	case "/api/vhosts":
		var vhosts []map[string]string
		for _, v := range b.vhosts {
			vhosts = append(vhosts, map[string]string{"name": v})
		}
		_ = json.NewEncoder(w).Encode(vhosts)
	default:
		http.NotFound(w, r)
	}
}

// module is the env module probing b, its plugin endpoints allowed.
func (b *fakeBroker) module(t *testing.T, maxBody int64, allowed string) *config.Module {
	t.Helper()
	u, _ := url.Parse(b.mgmt.URL)
	user, pw := fakeUser, fakePassword
	if allowed == "" {
		allowed = `127\.0\.0\.\d+:\d+`
	}
	g, err := config.Load(&config.EnvFlags{Host: u.Host, User: &user, Password: &pw, Source: "prometheus", AllowedTargets: allowed}, "", config.BuildOptions{UserAgent: "test", MaxBodyBytes: maxBody})
	if err != nil {
		t.Fatal(err)
	}
	return g.Env
}

func mustTarget(t *testing.T, b *fakeBroker) brokerhttp.Target {
	t.Helper()
	u, _ := url.Parse(b.mgmt.URL)
	target, err := brokerhttp.ParseTarget(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	return target
}

// listWith runs one listing of b with a scrape timeout, logging to logs.
func listWith(t *testing.T, src *Source, b *fakeBroker, m *config.Module, timeout time.Duration, logs *bytes.Buffer) (*source.Listing, time.Duration, error) {
	t.Helper()
	u, _ := url.Parse(b.mgmt.URL)
	target, err := brokerhttp.ParseTarget(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	if logs == nil {
		logs = &bytes.Buffer{}
	}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	l, err := src.List(ctx, target, m, logger)
	return l, time.Since(start), err
}

// member returns the listing's status of node.
func memberOf(l *source.Listing, node string) (source.Member, bool) {
	for _, m := range l.Members {
		if m.Node == node {
			return m, true
		}
	}
	return source.Member{}, false
}

// messages is the exported message count of a queue, and whether it has one.
func messages(t *testing.T, l *source.Listing, vhost, name string) (int64, bool) {
	t.Helper()
	for i, f := range queue.Fields() {
		if f.Metric == "rabbitmq_individual_queue_messages" {
			v, ok := exposed(t, l.Queues)[sample{i, vhost, name}]
			return v, ok
		}
	}
	t.Fatal("no messages field")
	return 0, false
}

func fq(vhost, name string, messages int64) fakeapi.PluginQueue {
	return fakeapi.PluginQueue{Vhost: vhost, Name: name, Ready: messages, Messages: messages, Reductions: 1}
}

// inflight counts requests in flight across handlers, and the most at once.
type inflight struct{ cur, max atomic.Int32 }

func (c *inflight) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := c.cur.Add(1)
		defer c.cur.Add(-1)
		for {
			m := c.max.Load()
			if n <= m || c.max.CompareAndSwap(m, n) {
				break
			}
		}
		h.ServeHTTP(w, r)
	})
}
