package web

import (
	"maps"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source/builtin"

	"compress/gzip"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/scrapetest"
)

const testPassword = "pw-Do-Not-Leak-42"

func newTestHandler(t *testing.T, defaultTarget string) (*Handler, *scrapetest.LockedBuffer) {
	t.Helper()
	user, pw := "monitor", testPassword
	return newHandler(t, config.EnvFlags{Host: defaultTarget, User: &user, Password: &pw, AllowedTargets: `127\.0\.0\.1:\d+`}, "")
}

// newHandler builds a handler whose configuration comes from flags and, if
// not empty, a config file with fileYAML, through config.Load as in main.
func newHandler(t testing.TB, flags config.EnvFlags, fileYAML string) (*Handler, *scrapetest.LockedBuffer) {
	t.Helper()
	path := ""
	if fileYAML != "" {
		path = filepath.Join(t.TempDir(), "config.yml")
		if err := os.WriteFile(path, []byte(fileYAML), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	logs := &scrapetest.LockedBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sc, err := config.NewSafeConfig(func() (*config.Generation, error) {
		return config.Load(&flags, path, config.BuildOptions{UserAgent: "test"})
	}, prometheus.NewRegistry(), logger)
	if err != nil {
		t.Fatal(err)
	}
	h := &Handler{
		Logger:         logger,
		Lister:         &source.Lister{Sources: builtin.Sources(), MaxTimeout: time.Minute},
		Config:         sc,
		TimeoutOffset:  500 * time.Millisecond,
		DefaultTimeout: 5 * time.Second,
		Exporter:       prometheus.NewRegistry(),
		MetricsQueues:  true,
	}
	return h, logs
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "source", "management", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type scrape struct {
	status  int
	header  http.Header
	body    string             // as sent, compressed when Content-Encoding says so
	samples scrapetest.Samples // of every 200 answer, decoded by its headers
}

func doScrape(t *testing.T, h http.HandlerFunc, rawQuery string, header http.Header) scrape {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/probe?"+rawQuery, nil)
	maps.Copy(req.Header, header)
	rec := httptest.NewRecorder()
	h(rec, req)
	res := scrape{status: rec.Code, header: rec.Header(), body: rec.Body.String()}
	if rec.Code == http.StatusOK {
		res.samples = scrapetest.Parse(t, rec.Header(), rec.Body.Bytes())
	}
	return res
}

// hostKey and queueKey name the series of the broker the tests probe (127.0.0.1).
func hostKey(metric string) string { return scrapetest.Key(metric, "host", "127.0.0.1") }

func queueKey(metric, vhost, name string) string {
	return scrapetest.Key(metric, "host", "127.0.0.1", "vhost", vhost, "name", name)
}

func fakeBroker(t *testing.T, handler http.HandlerFunc) (*httptest.Server, string) {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return srv, u.Host
}

func serveBody(body []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}
}

func TestProbeFixtures(t *testing.T) {
	tests := []struct {
		fixture string
		queues  int
		missing int
		want    map[string]float64
		absent  []string
	}{
		{fixture: "queues-3.10.8-lean.json", queues: 4, missing: 1, want: map[string]float64{
			queueKey("rabbitmq_individual_queue_messages", "/", "fx.classic"):                   3,
			queueKey("rabbitmq_individual_queue_messages_ready", "/", "fx.quorum"):              3,
			queueKey("rabbitmq_individual_queue_messages_unacknowledged", "fx v", "fx.q\"uote"): 0,
		}, absent: []string{queueKey("rabbitmq_individual_queue_messages", "/", "fx.stream")}},
		{fixture: "queues-3.13-default.json", queues: 4, missing: 2, want: map[string]float64{
			queueKey("rabbitmq_individual_queue_messages", "/", "orders"):                10,
			queueKey("rabbitmq_individual_queue_messages_ready", "/", "orders"):          8,
			queueKey("rabbitmq_individual_queue_messages_unacknowledged", "/", "orders"): 2,
			queueKey("rabbitmq_individual_queue_messages", "prod/eu", "payments.q"):      0,
		}, absent: []string{
			queueKey("rabbitmq_individual_queue_messages", "prod/eu", "events"),
			queueKey("rabbitmq_individual_queue_messages_ready", "/", "on-down-node"),
		}},
		{fixture: "queues-4.x-lean.json", queues: 4, missing: 2, want: map[string]float64{
			queueKey("rabbitmq_individual_queue_messages", "/", "big"):                       1200000,
			queueKey("rabbitmq_individual_queue_messages_unacknowledged", "/", "big"):        1000,
			queueKey("rabbitmq_individual_queue_messages_ready", "vh ünï/x", "q with space"): 0,
		}, absent: []string{queueKey("rabbitmq_individual_queue_messages", "/", "stream.s1")}},
		{fixture: "queues-3.10.8-paged-empty.json", queues: 0, missing: 0},
	}
	for _, tc := range tests {
		t.Run(tc.fixture, func(t *testing.T) {
			_, addr := fakeBroker(t, serveBody(fixture(t, tc.fixture)))
			h, _ := newTestHandler(t, addr)
			res := doScrape(t, h.Probe, "", nil)
			if res.status != http.StatusOK {
				t.Fatalf("status %d: %s", res.status, res.body)
			}
			want := map[string]float64{
				"probe_success": 1, hostKey("rabbitmq_up"): 1,
				hostKey("rabbitmq_queues"): float64(tc.queues), hostKey("rabbitmq_queues_missing_counts"): float64(tc.missing),
			}
			maps.Copy(want, tc.want)
			for k, v := range want {
				if got, ok := res.samples[k]; !ok || got != v {
					t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
				}
			}
			for _, k := range tc.absent {
				if _, ok := res.samples[k]; ok {
					t.Errorf("%s must have no sample (count absent in the API response)", k)
				}
			}
		})
	}
}

func TestProbeRequestIsLean(t *testing.T) {
	var got *http.Request
	_, addr := fakeBroker(t, func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(r.Context())
		w.Write([]byte("[]"))
	})
	h, _ := newTestHandler(t, "unused")
	res := doScrape(t, h.Probe, "target="+url.QueryEscape("http://"+addr+"/rabbit/"), nil)
	if res.samples["probe_success"] != 1 {
		t.Fatalf("probe failed: %s", res.body)
	}
	if got.URL.Path != "/rabbit/api/queues" {
		t.Errorf("path = %q, want the prefix kept: /rabbit/api/queues", got.URL.Path)
	}
	q := got.URL.Query()
	if q.Get("columns") != "name,vhost,messages,messages_ready,messages_unacknowledged" || q.Get("disable_stats") != "true" || q.Get("enable_queue_totals") != "true" || q.Has("sort") {
		t.Errorf("query = %q", got.URL.RawQuery)
	}
	if u, p, ok := got.BasicAuth(); !ok || u != "monitor" || p != testPassword {
		t.Errorf("basic auth = %q %q %v", u, p, ok)
	}
}

func TestProbeBrokerFailures(t *testing.T) {
	lean := fixture(t, "queues-3.10.8-lean.json")
	tests := []struct {
		name    string
		handler http.HandlerFunc
		log     string
	}{
		{"401 bad password", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(401)
			w.Write([]byte(`{"error":"not_authorized","reason":"Login failed"}`))
		}, "answered 401 Unauthorized"},
		{"401 not management user", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(401)
			w.Write([]byte(`{"error":"not_authorized","reason":"Not management user"}`))
		}, "Not management user"},
		{"404", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }, "answered 404 Not Found"},
		{"500", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }, "answered 500"},
		{"503 html", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(503)
			w.Write([]byte("<html><body><h1>503 Service Unavailable</h1>\nNo server is available</body></html>"))
		}, "answered 503 Service Unavailable"},
		{"bad json", serveBody([]byte(`{"not":"a listing"`)), "reading queue listing"},
		{"wrong types", serveBody([]byte(`[{"name":"q","vhost":"/","messages":"three"}]`)), "messages"},
		{"truncated mid-listing", serveBody(lean[:len(lean)/2]), "truncated"},
		// One page of a longer listing (a proxy adding page=): never exported as if whole.
		{"paginated, page 1 of 2", serveBody(fixture(t, "queues-4.x-paged.json")), `one of 2 pages`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, addr := fakeBroker(t, tc.handler)
			h, logs := newTestHandler(t, addr)
			res := doScrape(t, h.Probe, "", nil)
			if res.status != http.StatusOK {
				t.Fatalf("status = %d, want 200 with probe_success 0", res.status)
			}
			if res.samples["probe_success"] != 0 || res.samples[hostKey("rabbitmq_up")] != 0 {
				t.Errorf("want probe_success 0 and rabbitmq_up 0:\n%s", res.body)
			}
			if strings.Contains(res.body, "rabbitmq_individual_queue") {
				t.Errorf("a failed listing must not yield queue samples:\n%s", res.body)
			}
			if l := logs.String(); !strings.Contains(l, tc.log) || !strings.Contains(l, "target=http://127.0.0.1:") {
				t.Errorf("log %q lacks %q or the target", l, tc.log)
			}
			if strings.Contains(logs.String()+res.body, testPassword) {
				t.Errorf("password leaked")
			}
		})
	}
}

func TestProbeSlowBodyEndsAtDeadline(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	_, addr := fakeBroker(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`[{"name":"q","vhost":"/","messages":1},`))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	h, logs := newTestHandler(t, addr)
	res := doScrape(t, h.Probe, "", http.Header{"X-Prometheus-Scrape-Timeout-Seconds": {"1"}})
	if res.samples["probe_success"] != 0 || !strings.Contains(logs.String(), "timed out") {
		t.Fatalf("want a timed-out failure; body:\n%s\nlogs: %s", res.body, logs)
	}
	if d := res.samples["probe_duration_seconds"]; d < 0.4 || d > 5 {
		t.Errorf("probe_duration_seconds = %v, want about the 0.5 s timeout (1 s header minus 0.5 s offset)", d)
	}
}

func TestProbeBadRequests(t *testing.T) {
	h, _ := newTestHandler(t, "localhost")
	tests := []struct {
		name   string
		query  string
		header http.Header
		status int
		body   string
	}{
		{"unsupported scheme", "target=ftp://x", nil, 400, `invalid target: target scheme "ftp" is not supported`},
		{"garbled", "target=" + url.QueryEscape("http://[::1"), nil, 400, "invalid target"},
		{"userinfo", "target=" + url.QueryEscape("http://admin:"+testPassword+"@x"), nil, 400, "must not contain user information"},
		{"bad timeout header", "target=x", http.Header{"X-Prometheus-Scrape-Timeout-Seconds": {"soon"}}, 400, "invalid X-Prometheus-Scrape-Timeout-Seconds"},
		{"negative timeout header", "target=x", http.Header{"X-Prometheus-Scrape-Timeout-Seconds": {"-3"}}, 400, "want a positive number"},
		{"oversized query", "target=" + strings.Repeat("a", 5000), nil, 414, "longer than 4096"},
		{"misspelt parameter", "targt=x", nil, 400, `unknown query parameter "targt" (known: target, auth_module, debug)`},
		{"two unknown parameters", "target=x&module=a&foo", nil, 400, `unknown query parameter "foo", "module"`},
		{"repeated target", "target=localhost&target=evil", nil, 400, `query parameter "target" is given 2 times`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := doScrape(t, h.Probe, tc.query, tc.header)
			if res.status != tc.status || !strings.Contains(res.body, tc.body) {
				t.Fatalf("got %d %q, want %d containing %q", res.status, res.body, tc.status, tc.body)
			}
			if strings.Count(strings.TrimSpace(res.body), "\n") != 0 {
				t.Errorf("error body must be one line: %q", res.body)
			}
			if strings.Contains(res.body, testPassword) {
				t.Errorf("error echoes a secret: %q", res.body)
			}
		})
	}
}

func TestRedirectToOtherHostNotFollowed(t *testing.T) {
	var other atomic.Int32
	_, otherAddr := fakeBroker(t, func(w http.ResponseWriter, r *http.Request) {
		other.Add(1)
		w.Write([]byte("[]"))
	})
	_, addr := fakeBroker(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://"+otherAddr+r.URL.RequestURI(), http.StatusFound)
	})
	h, logs := newTestHandler(t, addr)
	res := doScrape(t, h.Probe, "", nil)
	if res.samples["probe_success"] != 0 || other.Load() != 0 {
		t.Fatalf("redirect followed to another host (%d requests there); body:\n%s", other.Load(), res.body)
	}
	if !strings.Contains(logs.String(), "refusing redirect") {
		t.Errorf("log lacks the reason: %s", logs)
	}
}

func TestConcurrentProbesShareOneRequest(t *testing.T) {
	const n = 8
	var requests atomic.Int32
	gate := make(chan struct{})
	_, addr := fakeBroker(t, func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		<-gate
		w.Write([]byte(`[{"name":"q","vhost":"/","messages":4,"messages_ready":4,"messages_unacknowledged":0}]`))
	})
	h, _ := newTestHandler(t, addr)
	var wg sync.WaitGroup
	results := make([]scrape, n)
	for i := range n {
		wg.Go(func() { results[i] = doScrape(t, h.Probe, "", nil) })
	}
	// Wait until the one request arrived and the others had time to join it.
	for requests.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	close(gate)
	wg.Wait()
	if got := requests.Load(); got != 1 {
		t.Fatalf("%d broker requests for %d concurrent probes, want 1", got, n)
	}
	for i, r := range results {
		if r.samples[queueKey("rabbitmq_individual_queue_messages", "/", "q")] != 4 {
			t.Errorf("probe %d did not get the shared result:\n%s", i, r.body)
		}
	}

	// Another configuration generation (say, a new password) never shares a result.
	env, target := h.Config.Current().Env, h.Config.Current().Target
	if err := h.Config.Reload("test"); err != nil {
		t.Fatal(err)
	}
	if source.Key(target, env) == source.Key(target, h.Config.Current().Env) {
		t.Fatal("request key ignores the module")
	}
}

func TestNegotiation(t *testing.T) {
	_, addr := fakeBroker(t, serveBody(fixture(t, "queues-3.10.8-lean.json")))
	h, _ := newTestHandler(t, addr)

	om := doScrape(t, h.Probe, "", http.Header{"Accept": {"application/openmetrics-text;version=1.0.0"}})
	if ct := om.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Fatalf("Content-Type = %q, want OpenMetrics", ct)
	}
	if !strings.HasSuffix(om.body, "\n# EOF\n") || strings.Count(om.body, "# EOF") != 1 {
		t.Errorf("OpenMetrics body must end with exactly one # EOF:\n%s", om.body)
	}
	if !strings.Contains(om.body, `rabbitmq_individual_queue_messages{host="127.0.0.1",name="fx.classic",vhost="/"} 3`) {
		t.Errorf("OpenMetrics body lacks the queue sample:\n%s", om.body)
	}

	gz := doScrape(t, h.Probe, "", http.Header{"Accept-Encoding": {"gzip"}})
	if gz.header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("no gzip despite Accept-Encoding: gzip")
	}
	zr, err := gzip.NewReader(strings.NewReader(gz.body))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if scrapetest.ParseText(t, string(plain))[queueKey("rabbitmq_individual_queue_messages_ready", "/", "fx.quorum")] != 3 {
		t.Errorf("gzip body lacks samples:\n%s", plain)
	}
	if acceptsGzip("gzip;q=0") || !acceptsGzip("deflate, gzip;q=0.5") || acceptsGzip("identity") {
		t.Error("acceptsGzip misreads q-values")
	}
}

func TestMetricsEndpoint(t *testing.T) {
	_, addr := fakeBroker(t, serveBody(fixture(t, "queues-3.10.8-lean.json")))
	h, _ := newTestHandler(t, addr)
	own := prometheus.NewGauge(prometheus.GaugeOpts{Name: "exporter_own_metric", Help: "x"})
	own.Set(7)
	reg := prometheus.NewRegistry()
	reg.MustRegister(own)
	h.Exporter = reg

	res := doScrape(t, h.Metrics, "", nil)
	if res.samples["exporter_own_metric"] != 7 || res.samples[queueKey("rabbitmq_individual_queue_messages", "/", "fx.classic")] != 3 || res.samples[hostKey("rabbitmq_up")] != 1 {
		t.Fatalf("want own metrics and queues:\n%s", res.body)
	}
	if _, ok := res.samples["probe_success"]; ok {
		t.Error("/metrics must not carry probe_success")
	}

	h.MetricsQueues = false
	res = doScrape(t, h.Metrics, "", nil)
	if res.samples["exporter_own_metric"] != 7 || strings.Contains(res.body, "rabbitmq_") {
		t.Fatalf("with queues off /metrics must carry only the exporter's metrics:\n%s", res.body)
	}
}

// recorder is a listener that notes every request and any Authorization header.
type recorder struct {
	requests atomic.Int32
	auth     atomic.Value
}

func (rec *recorder) handler(body []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec.requests.Add(1)
		if a := r.Header.Get("Authorization"); a != "" {
			rec.auth.Store(a)
		}
		w.Write(body)
	}
}

func TestAuthModulesAndAllowLists(t *testing.T) {
	body := []byte(`[{"name":"q","vhost":"/","messages":2,"messages_ready":1,"messages_unacknowledged":1}]`)
	var allowedRec, strangerRec recorder
	_, allowedAddr := fakeBroker(t, allowedRec.handler(body))
	_, strangerAddr := fakeBroker(t, strangerRec.handler(body))

	// The env module may go only to the default target in this test.
	user, pw := "monitor", testPassword
	h, logs := newHandler(t, config.EnvFlags{Host: "rabbit.internal", User: &user, Password: &pw}, `
auth_modules:
  prod:
    username: prod-user
    password: prod-`+testPassword+`
    targets: ['`+regexp.QuoteMeta(allowedAddr)+`']
`)

	tests := []struct {
		name   string
		query  string
		status int
		body   string
	}{
		{"unknown module", "target=" + allowedAddr + "&auth_module=nope", 400, `unknown auth_module "nope"`},
		{"module not allowed for target", "target=" + strangerAddr + "&auth_module=prod", 403, `target not allowed for auth_module "prod": http://` + strangerAddr + ` (` + strangerAddr + `) matches no pattern in auth_modules.prod.targets in /`},
		{"env credentials not allowed for target", "target=" + strangerAddr, 403, "--probe.allowed-targets / RABBITMQ_PROBE_ALLOWED_TARGETS"},
		{"pattern is anchored", "target=x" + allowedAddr + "&auth_module=prod", 403, "not allowed"},
		{"allowed", "target=" + allowedAddr + "&auth_module=prod", 200, "rabbitmq_individual_queue_messages_unacknowledged"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := doScrape(t, h.Probe, tc.query, nil)
			if res.status != tc.status || !strings.Contains(res.body, tc.body) {
				t.Fatalf("got %d %q, want %d containing %q", res.status, res.body, tc.status, tc.body)
			}
		})
	}
	if n := strangerRec.requests.Load(); n != 0 {
		t.Fatalf("a target no module allows received %d requests", n)
	}
	if allowedRec.requests.Load() != 1 {
		t.Fatalf("allowed target got %d requests, want 1", allowedRec.requests.Load())
	}
	req := &http.Request{Header: http.Header{"Authorization": {allowedRec.auth.Load().(string)}}}
	if u, p, _ := req.BasicAuth(); u != "prod-user" || p != "prod-"+testPassword {
		t.Fatalf("module credentials not used: %q", u)
	}
	if strings.Contains(logs.String(), testPassword) {
		t.Fatal("password in logs")
	}
}

func TestFiltersApply(t *testing.T) {
	body := []byte(`[{"name":"keep.1","vhost":"prod","messages":1,"messages_ready":1,"messages_unacknowledged":0},` +
		`{"name":"drop.tmp","vhost":"prod","messages":2,"messages_ready":2,"messages_unacknowledged":0},` +
		`{"name":"keep.2","vhost":"test","messages":3,"messages_ready":3,"messages_unacknowledged":0}]`)
	_, addr := fakeBroker(t, serveBody(body))
	h, _ := newHandler(t, config.EnvFlags{Host: addr, IncludeVhosts: "prod|staging", ExcludeQueues: `.*\.tmp`}, "")
	res := doScrape(t, h.Probe, "", nil)
	if res.samples[queueKey("rabbitmq_individual_queue_messages", "prod", "keep.1")] != 1 || res.samples[hostKey("rabbitmq_queues")] != 1 {
		t.Fatalf("filter result wrong:\n%s", res.body)
	}
	for _, gone := range []string{queueKey("rabbitmq_individual_queue_messages", "prod", "drop.tmp"), queueKey("rabbitmq_individual_queue_messages", "test", "keep.2")} {
		if _, ok := res.samples[gone]; ok {
			t.Errorf("%s should be filtered out", gone)
		}
	}
}

func TestDebugOutput(t *testing.T) {
	_, addr := fakeBroker(t, serveBody([]byte(`[{"name":"q","vhost":"/","messages":5,"messages_ready":5,"messages_unacknowledged":0}]`)))
	h, _ := newTestHandler(t, addr)
	req := httptest.NewRequest(http.MethodGet, "/probe?debug=true", nil)
	rec := httptest.NewRecorder()
	h.Probe(rec, req)
	out := rec.Body.String()
	for _, want := range []string{"Logs for the probe:", "probe finished", "Metrics that would have been returned:", `rabbitmq_individual_queue_messages{host="127.0.0.1",name="q",vhost="/"} 5`, "probe_success 1", "Module configuration", "username: monitor", "password: <secret>"} {
		if !strings.Contains(out, want) {
			t.Errorf("debug output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, testPassword) || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") {
		t.Fatalf("debug output leaks the password or is not text/plain:\n%s", out)
	}
}
