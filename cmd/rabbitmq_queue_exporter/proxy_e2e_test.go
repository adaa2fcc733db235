package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/testbed"
)

// proxyOnlyHost is a broker name only the test proxy knows (.test is
// reserved, so nothing resolves it): a probe of it can only succeed through
// the proxy. It also works for proxy_from_environment, whose Go
// implementation never proxies loopback addresses.
const proxyOnlyHost = "rabbit.via-proxy.test"

// forwardProxy is a plain HTTP forward proxy (absolute-form requests) that
// counts what it forwards, per requested host:port. It sends proxyOnlyHost
// to the loopback address, as a proxy with its own DNS view would.
type forwardProxy struct {
	srv *httptest.Server
	mu  sync.Mutex
	got map[string]int
}

func startForwardProxy(t *testing.T) *forwardProxy {
	t.Helper()
	p := &forwardProxy{got: map[string]int{}}
	forward := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		out := *pr.In.URL
		if host, port, err := net.SplitHostPort(out.Host); err == nil && host == proxyOnlyHost {
			out.Host = net.JoinHostPort("127.0.0.1", port)
		}
		pr.Out.URL = &out
		pr.Out.Host = pr.In.Host
	}}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !r.URL.IsAbs() || r.URL.Scheme != "http" {
			http.Error(w, "this proxy forwards absolute http:// requests only", http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		p.got[r.URL.Host]++
		p.mu.Unlock()
		forward.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *forwardProxy) requests(hostPort string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.got[hostPort]
}

// TestProbeThroughProxy probes the real broker through an HTTP proxy, set by
// an auth module's proxy_url and by proxy_from_environment with HTTP_PROXY in
// the exporter's environment, and checks exact counts of a queue filled
// through AMQP.
func TestProbeThroughProxy(t *testing.T) {
	b := testbed.Primary(t)
	mgmt, _ := url.Parse(b.MgmtURL)
	queue := "it.proxy." + testbed.UniqueName("")
	conn := b.Dial(t, "/")
	b.DeclareQueue(t, conn, queue, testbed.Classic)
	b.Publish(t, conn, queue, 7)
	b.HoldUnacked(t, conn, queue, 2)
	b.WaitForCounts(t, "/", queue, 7, 5, 2, 30*time.Second)

	proxy := startForwardProxy(t)
	viaName := net.JoinHostPort(proxyOnlyHost, mgmt.Port())
	cfg := filepath.Join(t.TempDir(), "config.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`auth_modules:
  via_url:
    username: %[1]s
    password: %[2]s
    targets: ['rabbit\.via-proxy\.test:%[3]s', '127\.0\.0\.1:%[3]s']
    proxy_url: %[4]s
  via_env:
    username: %[1]s
    password: %[2]s
    targets: ['rabbit\.via-proxy\.test:%[3]s', '127\.0\.0\.1:%[3]s']
    proxy_from_environment: true
`, b.User, b.Password, mgmt.Port(), proxy.srv.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startExporter(t, []string{"HTTP_PROXY=" + proxy.srv.URL, "RABBITMQ_HOST=" + mgmt.Host}, "--config.file="+cfg, "--no-metrics.queues")

	for _, c := range []struct {
		module, target string
		proxied        bool
	}{
		{"via_url", viaName, true},
		{"via_url", mgmt.Host, true}, // proxy_url applies to loopback targets too
		{"via_env", viaName, true},
		// Go's environment proxy settings never apply to loopback addresses.
		{"via_env", mgmt.Host, false},
	} {
		t.Run(c.module+" "+c.target, func(t *testing.T) {
			before := proxy.requests(c.target)
			host, _, _ := net.SplitHostPort(c.target)
			// The lean listing's totals can lag the per-queue endpoint by a
			// stats interval: retry until they agree, then assert strictly.
			var s map[string]float64
			for deadline := time.Now().Add(testbed.Patience); ; {
				res := p.get(t, "/probe?target="+url.QueryEscape(c.target)+"&auth_module="+c.module, nil)
				if res.status != 200 {
					t.Fatalf("%d %s", res.status, res.body)
				}
				s = res.samples(t)
				if s["probe_success"] != 1 {
					t.Fatalf("probe failed:\n%s\nexporter log:\n%s", res.body, p.logs)
				}
				if s[queueKey("rabbitmq_individual_queue_messages_ready", host, "/", queue)] == 5 || time.Now().After(deadline) {
					break
				}
				time.Sleep(time.Second)
			}
			for metric, want := range map[string]float64{
				"rabbitmq_individual_queue_messages":                7,
				"rabbitmq_individual_queue_messages_ready":          5,
				"rabbitmq_individual_queue_messages_unacknowledged": 2,
			} {
				if got, ok := s[queueKey(metric, host, "/", queue)]; !ok || got != want {
					t.Errorf("%s{host=%q,name=%q} = %v (present %v), want %v", metric, host, queue, got, ok, want)
				}
			}
			seen := proxy.requests(c.target) - before
			switch {
			case c.proxied && seen == 0:
				t.Errorf("the proxy saw no request for %s", c.target)
			case !c.proxied && seen != 0:
				t.Errorf("the proxy saw %d request(s) for the loopback target, which the environment's proxy settings exclude", seen)
			}
		})
	}
}
