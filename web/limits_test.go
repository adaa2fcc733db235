package web

import (
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
)

// rawListener accepts TCP connections and records whatever bytes arrive,
// without speaking HTTP: it proves what a client sent, even over a scheme the
// target does not speak.
type rawListener struct {
	l     net.Listener
	mu    sync.Mutex
	conns int
	data  strings.Builder
}

func newRawListener(t *testing.T) *rawListener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &rawListener{l: l}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.conns++
			r.mu.Unlock()
			go func() {
				defer c.Close()
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					r.mu.Lock()
					r.data.Write(buf[:n])
					r.mu.Unlock()
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return r
}

func (r *rawListener) seen() (int, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns, r.data.String()
}

// TestNoSchemeDowngrade: credentials configured for TLS (an https
// RABBITMQ_HOST, or a module with tls_config) are refused for http targets
// with 403, and not a byte reaches the listener.
func TestNoSchemeDowngrade(t *testing.T) {
	raw := newRawListener(t)
	addr := raw.l.Addr().String()
	user, pw := "monitor", testPassword
	h, _ := newHandler(t, config.EnvFlags{Host: "https://" + addr, User: &user, Password: &pw, AllowedTargets: `127\.0\.0\.1:\d+`}, `
auth_modules:
  tls:
    username: u
    password: `+testPassword+`
    targets: ['127\.0\.0\.1:\d+']
    tls_config:
      insecure_skip_verify: true
`)
	for _, q := range []string{"target=http://" + addr, "target=" + addr, "target=http://" + addr + "&auth_module=tls"} {
		res := doScrape(t, h.Probe, q, nil)
		if res.status != http.StatusForbidden || !strings.Contains(res.body, "never sent over plain http") {
			t.Errorf("%s: got %d %q, want 403", q, res.status, res.body)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if conns, data := raw.seen(); conns != 0 || data != "" {
		t.Fatalf("the listener got %d connections: %q", conns, data)
	}
}

// TestConcurrencyLimit: beyond --web.max-requests, probes wait for a slot and
// get 503 if none frees up before their deadline; /metrics has its own slots.
func TestConcurrencyLimit(t *testing.T) {
	var inFlight, maxSeen atomic.Int32
	gate := make(chan struct{})
	_, addr := fakeBroker(t, func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for { // raise the peak unless another request raised it past n
			p := maxSeen.Load()
			if n <= p || maxSeen.CompareAndSwap(p, n) {
				break
			}
		}
		<-gate
		w.Write([]byte(`[{"name":"q","vhost":"/","messages":1,"messages_ready":1,"messages_unacknowledged":0}]`))
	})
	h, _ := newTestHandler(t, addr)
	h.MaxRequests = 2
	h.MetricsQueues = false
	var wg sync.WaitGroup
	results := make([]scrape, 4)
	for i := range results {
		wg.Go(func() {
			// A path prefix per probe: distinct targets cannot share one request.
			q := "target=" + url.QueryEscape("http://"+addr+"/p"+strconv.Itoa(i))
			results[i] = doScrape(t, h.Probe, q, http.Header{"X-Prometheus-Scrape-Timeout-Seconds": {"3"}})
		})
	}
	time.Sleep(300 * time.Millisecond)
	if n := inFlight.Load(); n != 2 {
		t.Fatalf("%d broker requests in flight, want the limit of 2", n)
	}
	// /metrics stays responsive while every probe slot is taken.
	if m := doScrape(t, h.Metrics, "", nil); m.status != http.StatusOK {
		t.Fatalf("/metrics answered %d while probes were waiting", m.status)
	}
	close(gate)
	wg.Wait()
	for i, r := range results {
		if r.samples["probe_success"] != 1 {
			t.Errorf("probe %d: %d %s", i, r.status, r.body)
		}
	}
	if maxSeen.Load() != 2 {
		t.Fatalf("at most %d broker requests at once, want 2", maxSeen.Load())
	}

	// A probe that finds no free slot before its deadline gets 503.
	hold := make(chan struct{})
	_, slowAddr := fakeBroker(t, func(w http.ResponseWriter, r *http.Request) { <-hold })
	h.MaxRequests = 1
	h.slotsOnce = sync.Once{}
	wg.Go(func() {
		doScrape(t, h.Probe, "target="+url.QueryEscape(slowAddr), http.Header{"X-Prometheus-Scrape-Timeout-Seconds": {"5"}})
	})
	time.Sleep(100 * time.Millisecond)
	res := doScrape(t, h.Probe, "target="+url.QueryEscape("http://"+slowAddr+"/other"), http.Header{"X-Prometheus-Scrape-Timeout-Seconds": {"0.8"}})
	close(hold)
	wg.Wait()
	if res.status != http.StatusServiceUnavailable || !strings.Contains(res.body, "--web.max-requests=1") {
		t.Fatalf("got %d %q, want 503 naming --web.max-requests", res.status, res.body)
	}
}

// TestAllowListJudgesTheDialledHost: hosts spelt with Unicode full stops are
// dialled as their IDNA mapping (127.0.0.1); a pattern that would match the
// spelling but not the mapped name refuses them, and nothing is sent.
func TestAllowListJudgesTheDialledHost(t *testing.T) {
	raw := newRawListener(t)
	_, port, _ := net.SplitHostPort(raw.l.Addr().String())
	user, pw := "monitor", testPassword
	h, _ := newHandler(t, config.EnvFlags{Host: "rabbit.internal", User: &user, Password: &pw, AllowedTargets: `[^.]+:` + port}, "")
	for _, host := range []string{"127\u30020\u30020\u30021", "127\uff0e0\uff0e0\uff0e1", "127\uff610\uff610\uff611"} {
		res := doScrape(t, h.Probe, "target="+url.QueryEscape(host+":"+port), nil)
		if res.status != http.StatusForbidden || !strings.Contains(res.body, "127.0.0.1:"+port) {
			t.Errorf("%q: got %d %q, want 403 naming 127.0.0.1", host, res.status, res.body)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if conns, data := raw.seen(); conns != 0 {
		t.Fatalf("the listener got %d connections: %q", conns, data)
	}
}

// TestDuplicateQueuesCountedOnce: a listing with a repeated entry, or two
// names that become the same label once invalid UTF-8 is replaced, yields one
// series each, a meta metric and a log line.
func TestDuplicateQueuesCountedOnce(t *testing.T) {
	_, addr := fakeBroker(t, serveBody([]byte(`[{"name":"q","vhost":"/","messages":1,"messages_ready":1,"messages_unacknowledged":0},`+
		`{"name":"q","vhost":"/","messages":2,"messages_ready":2,"messages_unacknowledged":0},`+
		`{"name":"a\ufffd","vhost":"/","messages":3,"messages_ready":3,"messages_unacknowledged":0},`+
		"{\"name\":\"a\xff\",\"vhost\":\"/\",\"messages\":4,\"messages_ready\":4,\"messages_unacknowledged\":0}]")))
	h, logs := newTestHandler(t, addr)
	res := doScrape(t, h.Probe, "", nil) // doScrape's parser fails on a duplicate series
	if res.samples[hostKey("rabbitmq_queues_duplicates_dropped")] != 2 || res.samples[hostKey("rabbitmq_queues")] != 2 {
		t.Fatalf("want 2 queues and 2 duplicates:\n%s", res.body)
	}
	if res.samples[queueKey("rabbitmq_individual_queue_messages", "/", "q")] != 1 || res.samples[queueKey("rabbitmq_individual_queue_messages", "/", "a\uFFFD")] != 3 {
		t.Fatalf("the first of each must be kept:\n%s", res.body)
	}
	if !strings.Contains(logs.String(), "dropped queues whose labels repeat") {
		t.Errorf("no log line:\n%s", logs)
	}
}
