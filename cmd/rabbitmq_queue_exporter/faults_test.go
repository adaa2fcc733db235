package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/scrapetest"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/testbed"
)

// Distinctive secrets: the leak test greps every log line and response for
// them (and their encoded forms). The shared core catches any escaping.
const (
	leakUser      = "monitor"
	envSecret     = "EnvSecretCore-7f3a+/=&%\"x"
	moduleSecret  = "ModSecretCore-91bc+/=&%\"y"
	maxBodyFlag   = "64MiB"
	maxBodyBytes  = 64 << 20
	twoGB         = int64(2) << 30
	stringBound   = 64 << 10 // the decoder's default string-length bound
	rssCeilingMiB = 256
)

// faultBroker is one fake management API serving the whole matrix. The case
// is chosen by the target's path prefix (/c/<case>), so every case is its own
// target (no request sharing between cases) and per-case request counts show
// when nothing at all was sent.
type faultBroker struct {
	plain, tls *httptest.Server
	cases      map[string]http.HandlerFunc

	mu        sync.Mutex
	hits      map[string]int
	passwords map[string]string // last password each case received
	seen      map[string]bool   // every password received
	written   map[string]int64  // body bytes the streaming cases got out
	running   atomic.Int64      // handlers in progress
}

func newFaultBroker(t *testing.T) *faultBroker {
	t.Helper()
	b := &faultBroker{hits: map[string]int{}, passwords: map[string]string{}, seen: map[string]bool{}, written: map[string]int64{}}
	listing := `[{"name":"q1","vhost":"/","messages":3,"messages_ready":2,"messages_unacknowledged":1}]`
	b.cases = map[string]http.HandlerFunc{
		"default":   jsonBody(200, listing),
		"ok":        jsonBody(200, listing),
		"401-login": jsonBody(401, `{"error":"not_authorized","reason":"Login failed"}`),
		"401-not-management": jsonBody(401,
			`{"error":"not_authorized","reason":"Not management user"}`),
		"500": jsonBody(500, `{"error":"Internal Server Error","reason":"{badarg,[{erlang,list_to_atom,[\"x\"],[]}]}"}`),
		"503-html": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(503)
			fmt.Fprint(w, "<html><head><title>503</title></head><body>\n<h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>\n")
		},
		// A misbehaving proxy that reflects the credentials it was sent.
		"401-echo": func(w http.ResponseWriter, r *http.Request) {
			user, pw, _ := r.BasicAuth()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(401)
			reason, _ := json.Marshal(fmt.Sprintf("Login failed for %s with password %s (Authorization: %s)", user, pw, r.Header.Get("Authorization")))
			fmt.Fprintf(w, `{"error":"not_authorized","reason":%s}`, reason)
		},
		"200-html":           func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "<html><body>Please log in</body></html>") },
		"200-empty":          func(w http.ResponseWriter, r *http.Request) {},
		"type-name-number":   jsonBody(200, `[{"name":1,"vhost":"/","messages":1}]`),
		"type-count-string":  jsonBody(200, `[{"name":"q","vhost":"/","messages":"three"}]`),
		"type-count-float":   jsonBody(200, `[{"name":"q","vhost":"/","messages":1.5}]`),
		"type-count-neg":     jsonBody(200, `[{"name":"q","vhost":"/","messages":-1}]`),
		"type-count-object":  jsonBody(200, `[{"name":"q","vhost":"/","messages_ready":{"total":1}}]`),
		"type-top-object":    jsonBody(200, `{"queues":[]}`),
		"type-element-array": jsonBody(200, `[["q","/",1]]`),
		"deep-nesting":       jsonBody(200, `[{"name":"q","vhost":"/","x":`+strings.Repeat("[", 200)+strings.Repeat("]", 200)+`}]`),
		"truncated":          jsonBody(200, `[{"name":"q1","vhost":"/","messages":3},{"name":"q2","vhost":"/","mess`),
		"cut-connection": func(w http.ResponseWriter, r *http.Request) {
			// Promises more than it sends, then drops the connection mid-body.
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(200)
			fmt.Fprint(w, `[{"name":"q1","vhost":"/","messages":3},{"name":"q2"`)
			w.(http.Flusher).Flush()
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
		},
		"redirect-away": func(w http.ResponseWriter, r *http.Request) {
			// Same port, other host name: credentials must not follow.
			_, port, _ := net.SplitHostPort(r.Host)
			http.Redirect(w, r, "http://localhost:"+port+"/c/redirect-target/api/queues", http.StatusFound)
		},
		"redirect-target": jsonBody(200, listing),
		"slow-endless": func(w http.ResponseWriter, r *http.Request) {
			// Valid JSON trickling forever: only the scrape deadline ends it.
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, "[")
			for i := 0; ; i++ {
				if i > 0 {
					fmt.Fprint(w, ",")
				}
				fmt.Fprintf(w, `{"name":"slow-%d","vhost":"/","messages":1}`, i)
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		},
		"2gb-body":   func(w http.ResponseWriter, r *http.Request) { b.record("2gb-body", streamQueues(w, twoGB)) },
		"2gb-string": func(w http.ResponseWriter, r *http.Request) { b.record("2gb-string", streamOneString(w, twoGB)) },
		"2gb-padded": func(w http.ResponseWriter, r *http.Request) {
			n, queues := streamPadded(w, twoGB)
			b.record("2gb-padded", n)
			b.record("2gb-padded-queues", queues)
		},
		"missing-counts": jsonBody(200, `[{"name":"complete","vhost":"/","messages":5,"messages_ready":4,"messages_unacknowledged":1},`+
			`{"name":"stream","vhost":"/"},`+
			`{"name":"nulls","vhost":"/","messages":null,"messages_ready":7,"messages_unacknowledged":null},`+
			`{"name":"zeros","vhost":"/","messages":0,"messages_ready":0,"messages_unacknowledged":0}]`),
		"huge-names":    jsonBody(200, hugeNamesListing),
		"unicode":       jsonBody(200, unicodeListing),
		"string-bound":  jsonBody(200, stringBoundListing(stringBound)),
		"string-over":   jsonBody(200, stringBoundListing(stringBound+1)),
		"userinfo":      jsonBody(200, listing),
		"forbidden":     jsonBody(200, listing),
		"forbidden-mod": jsonBody(200, listing),
	}
	b.plain = httptest.NewServer(b)
	b.tls = httptest.NewUnstartedServer(b)
	// The wrong-CA case makes the handshake fail on purpose; keep that out of the test output.
	b.tls.Config.ErrorLog = log.New(io.Discard, "", 0)
	b.tls.StartTLS()
	t.Cleanup(func() {
		b.plain.Close()
		b.tls.Close()
	})
	return b
}

func jsonBody(code int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprint(w, body)
	}
}

func (b *faultBroker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.running.Add(1)
	defer b.running.Add(-1)
	rest, ok := strings.CutPrefix(r.URL.Path, "/c/")
	key, path, _ := strings.Cut(rest, "/")
	h := b.cases[key]
	if !ok || h == nil || path != "api/queues" {
		jsonBody(404, `{"error":"Object Not Found","reason":"Not Found"}`)(w, r)
		return
	}
	_, pw, _ := r.BasicAuth()
	b.mu.Lock()
	b.hits[key]++
	b.passwords[key] = pw
	b.seen[pw] = true
	b.mu.Unlock()
	h(w, r)
}

func (b *faultBroker) record(key string, n int64) {
	b.mu.Lock()
	b.written[key] = n
	b.mu.Unlock()
}

func (b *faultBroker) count(key string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hits[key]
}

func (b *faultBroker) password(key string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.passwords[key]
}

func (b *faultBroker) bytesWritten(key string) (int64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, ok := b.written[key]
	return n, ok
}

func hostOf(s *httptest.Server) string {
	return strings.TrimPrefix(strings.TrimPrefix(s.URL, "http://"), "https://")
}

// target is the plain-HTTP target of a case; tlsTarget the https one.
func (b *faultBroker) target(key string) string    { return "http://" + hostOf(b.plain) + "/c/" + key }
func (b *faultBroker) tlsTarget(key string) string { return "https://" + hostOf(b.tls) + "/c/" + key }

// streamQueues writes a listing of about limit bytes, generated on the fly
// into one reused buffer, and stops at the first failed write (the exporter
// hung up). It returns the bytes written.
func streamQueues(w http.ResponseWriter, limit int64) int64 {
	w.Header().Set("Content-Type", "application/json")
	buf := make([]byte, 0, 64<<10)
	buf = append(buf, '[')
	var written int64
	for i := 0; written < limit; {
		for len(buf) < 60<<10 {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, `{"name":"q-`...)
			buf = strconv.AppendInt(buf, int64(i), 10)
			buf = append(buf, `","vhost":"/","messages":1,"messages_ready":1,"messages_unacknowledged":0}`...)
			i++
		}
		n, err := w.Write(buf)
		written += int64(n)
		if err != nil {
			return written
		}
		buf = buf[:0]
	}
	n, _ := w.Write([]byte("]"))
	return written + int64(n)
}

// streamPadded writes a complete listing of about limit bytes in which each
// queue carries a 60 KB field the exporter must skip, so a full 2 GB body
// holds only some 35k queues. It returns the bytes and queues written.
func streamPadded(w http.ResponseWriter, limit int64) (written, queues int64) {
	w.Header().Set("Content-Type", "application/json")
	pad := bytes.Repeat([]byte("x"), 60_000)
	buf := make([]byte, 0, 64<<10)
	buf = append(buf, '[')
	for written < limit {
		if queues > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"name":"q-`...)
		buf = strconv.AppendInt(buf, queues, 10)
		buf = append(buf, `","vhost":"/","messages":1,"messages_ready":1,"messages_unacknowledged":0,"arguments":{"x-pad":"`...)
		buf = append(buf, pad...)
		buf = append(buf, `"}}`...)
		queues++
		n, err := w.Write(buf)
		written += int64(n)
		if err != nil {
			return written, queues
		}
		buf = buf[:0]
	}
	n, _ := w.Write([]byte("]"))
	return written + int64(n), queues
}

// streamOneString writes a listing whose first queue name is one string of
// about limit bytes.
func streamOneString(w http.ResponseWriter, limit int64) int64 {
	w.Header().Set("Content-Type", "application/json")
	n, err := fmt.Fprint(w, `[{"vhost":"/","name":"`)
	written := int64(n)
	chunk := bytes.Repeat([]byte("a"), 64<<10)
	for err == nil && written < limit {
		n, err = w.Write(chunk)
		written += int64(n)
	}
	if err == nil {
		n, _ = fmt.Fprint(w, `","messages":1}]`)
		written += int64(n)
	}
	return written
}

var (
	hugeVhost = strings.Repeat("vhost/ü\\", 10<<10/9+1)[:10<<10]
	hugeName  = strings.Repeat(`queue "name" `, 10<<10/13+1)[:10<<10]
)

var hugeNamesListing = func() string {
	b, _ := json.Marshal([]map[string]any{
		{"name": hugeName, "vhost": hugeVhost, "messages": 10, "messages_ready": 9, "messages_unacknowledged": 1},
		{"name": "short", "vhost": hugeVhost, "messages": 2, "messages_ready": 2, "messages_unacknowledged": 0},
		{"name": hugeName, "vhost": "/", "messages": 3, "messages_ready": 0, "messages_unacknowledged": 3},
	})
	return string(b)
}()

// unicodeListing mixes names encoding/json escapes itself with hand-written
// JSON: raw invalid UTF-8, surrogate pairs and a lone surrogate.
var unicodeListing = func() string {
	names := []string{
		"naïve ✓ 日本語", "emoji 🐇🥕", "tab\there", "new\nline", "carriage\rreturn", `quote" and back\slash`,
		"nul\x00byte", "bell\x07 esc\x1b del\x7f", "line\u2028sep\u2029para", `label="fake",x="y"}`, "trailing\\",
		"c1 \u0085 control", "zero\u200bwidth", "bom\ufeff", "a,b=c}d{", "#comment", " leading space",
	}
	var parts []string
	for i, n := range names {
		vhost := "/"
		if i%3 == 1 {
			vhost = "vh " + n
		}
		b, _ := json.Marshal(map[string]any{"name": n, "vhost": vhost, "messages": i, "messages_ready": i, "messages_unacknowledged": 0})
		parts = append(parts, string(b))
	}
	parts = append(parts,
		"{\"name\":\"raw invalid \xff\xfe utf8\",\"vhost\":\"/\",\"messages\":100}",
		`{"name":"escaped pair \ud83d\udc07","vhost":"\/slash\/","messages":101}`,
		`{"name":"lone \ud800 surrogate","vhost":"/","messages":102}`,
		`{"name":"all escapes \" \\ \/ \b \f \n \r \t \u0000 \u001f","vhost":"/","messages":103}`,
	)
	return "[" + strings.Join(parts, ",") + "]"
}()

func stringBoundListing(n int) string {
	return `[{"name":"` + strings.Repeat("n", n) + `","vhost":"/","messages":1}]`
}

// expectedQueues decodes a listing with encoding/json, the reference the
// exporter's decoder is specified against, into expected per-queue samples.
func expectedQueues(t *testing.T, host, listing string) map[string]float64 {
	t.Helper()
	var qs []struct {
		Name     string `json:"name"`
		Vhost    string `json:"vhost"`
		Messages *int64 `json:"messages"`
		Ready    *int64 `json:"messages_ready"`
		Unacked  *int64 `json:"messages_unacknowledged"`
	}
	if err := json.Unmarshal([]byte(listing), &qs); err != nil {
		t.Fatalf("reference decode: %v", err)
	}
	out := map[string]float64{}
	for _, q := range qs {
		for metric, v := range map[string]*int64{
			"rabbitmq_individual_queue_messages":                q.Messages,
			"rabbitmq_individual_queue_messages_ready":          q.Ready,
			"rabbitmq_individual_queue_messages_unacknowledged": q.Unacked,
		} {
			if v != nil {
				out[scrapetest.KeyOf(metric, map[string]string{"host": host, "vhost": q.Vhost, "name": q.Name})] = float64(*v)
			}
		}
	}
	return out
}

// writeCA writes a fresh self-signed CA certificate, one that signed nothing
// the fakes serve.
func writeCA(t *testing.T, path string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "unrelated test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// faultEnv is an exporter configured for the matrix: env credentials and
// auth modules (password files) with distinctive secrets, a 64 MiB body bound.
type faultEnv struct {
	p         *exporterProc
	broker    *faultBroker
	closed    string // host:port nothing listens on
	env, args []string
	dir       string

	mu     sync.Mutex
	bodies []string // every response body, for the leak test
}

func startFaultEnv(t *testing.T) *faultEnv {
	t.Helper()
	b := newFaultBroker(t)
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "module.pw")
	otherCA := filepath.Join(dir, "other-ca.pem")
	serverCA := filepath.Join(dir, "server-ca.pem")
	writeCA(t, otherCA)
	if err := os.WriteFile(serverCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.tls.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pwFile, []byte(moduleSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	module := func(name, ca string) string {
		s := fmt.Sprintf("  %s:\n    username: %s\n    password_file: %s\n    targets: ['127\\.0\\.0\\.1:\\d+']\n", name, leakUser, pwFile)
		if ca != "" {
			s += "    tls_config:\n      ca_file: " + ca + "\n"
		}
		return s
	}
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte("auth_modules:\n"+module("leak", "")+module("wrongca", otherCA)+module("rightca", serverCA)), 0o600); err != nil {
		t.Fatal(err)
	}
	closed := freePort(t) // listened on and closed again: connections are refused
	env := []string{"RABBITMQ_HOST=" + b.target("default"), "RABBITMQ_USER=" + leakUser, "RABBITMQ_PASSWORD=" + envSecret}
	args := []string{"--config.file=" + cfg, "--rabbitmq.max-response-bytes=" + maxBodyFlag, "--no-metrics.queues",
		`--probe.allowed-targets=127\.0\.0\.1:\d+|no-such-host\.invalid:\d+`}
	p := startExporter(t, env, args...)
	return &faultEnv{p: p, broker: b, closed: closed, env: env, args: args, dir: dir}
}

type faultCase struct {
	name   string
	query  func(e *faultEnv) string // raw query string of /probe
	header http.Header
	status int // 0: 200
	// For 200 answers: probe_success, the host label of rabbitmq_up, and the
	// substrings one log line must hold (the target is checked as well).
	success float64
	host    string
	logs    []string
	// For 4xx answers: substrings of the one-line body.
	body []string
	// Fault broker cases that must not receive a request.
	noRequest []string
	within    time.Duration // the answer must arrive within this; default 10 s
	heavy     bool          // multi-GB stream: full lane only
	check     func(t *testing.T, e *faultEnv, res response, got map[string]float64)
}

// probeQuery encodes key/value pairs as a /probe query.
func probeQuery(kv ...string) func(*faultEnv) string {
	return func(*faultEnv) string {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v.Encode()
	}
}

// caseTarget probes the fault broker's case key, with extra query pairs.
func caseTarget(key string, extra ...string) func(*faultEnv) string {
	return func(e *faultEnv) string {
		return probeQuery(append([]string{"target", e.broker.target(key)}, extra...)...)(e)
	}
}

const listFailed = `msg="listing queues failed"`

func timeoutHeader(seconds string) http.Header {
	return http.Header{"X-Prometheus-Scrape-Timeout-Seconds": {seconds}}
}

func faultCases() []faultCase {
	brokerFail := func(name, key string, logs ...string) faultCase {
		return faultCase{name: name, query: caseTarget(key), host: "127.0.0.1", logs: append([]string{listFailed}, logs...)}
	}
	queuesExact := func(listing string) func(*testing.T, *faultEnv, response, map[string]float64) {
		return func(t *testing.T, e *faultEnv, res response, got map[string]float64) {
			want := expectedQueues(t, "127.0.0.1", listing)
			for k, v := range want {
				if g, ok := got[k]; !ok || g != v {
					t.Errorf("missing or wrong sample %.300q: got %v (present %v), want %v", k, g, ok, v)
				}
			}
			for k := range got {
				if strings.HasPrefix(k, "rabbitmq_individual_queue") {
					if _, ok := want[k]; !ok {
						t.Errorf("unexpected sample %.300q", k)
					}
				}
			}
			scrapetest.Promtool(t, res.header, []byte(res.body))
		}
	}
	cases := []faultCase{
		// Broker side.
		{name: "connection refused", query: func(e *faultEnv) string { return probeQuery("target", e.closed)(e) }, host: "127.0.0.1",
			logs: []string{listFailed, "connection refused"}},
		{name: "DNS failure", query: probeQuery("target", "no-such-host.invalid"), host: "no-such-host.invalid",
			header: timeoutHeader("5"), logs: []string{listFailed, "target=http://no-such-host.invalid:15672", "no-such-host.invalid"}},
		{name: "TLS to a plain HTTP listener", query: func(e *faultEnv) string {
			return probeQuery("target", "https://"+hostOf(e.broker.plain)+"/c/ok")(e)
		}, host: "127.0.0.1", logs: []string{listFailed, "server gave HTTP response to HTTPS client"}, noRequest: []string{"ok"}},
		{name: "TLS wrong CA", query: func(e *faultEnv) string {
			return probeQuery("target", e.broker.tlsTarget("ok"), "auth_module", "wrongca")(e)
		}, host: "127.0.0.1", logs: []string{listFailed, "module=wrongca", "certificate signed by unknown authority"}, noRequest: []string{"ok"}},
		{name: "TLS right CA (control)", query: func(e *faultEnv) string {
			return probeQuery("target", e.broker.tlsTarget("ok"), "auth_module", "rightca")(e)
		}, success: 1, host: "127.0.0.1", logs: []string{`msg="listed queues"`, "queues=1"}},
		brokerFail("401 bad password", "401-login", "answered 401 Unauthorized", "check the user name and password", "Login failed"),
		brokerFail("401 not management user", "401-not-management", "answered 401 Unauthorized", "Not management user"),
		brokerFail("401 echoing the credentials", "401-echo", "answered 401 Unauthorized", "(reason withheld: it may echo the credentials)"),
		{name: "404 wrong path prefix", query: func(e *faultEnv) string {
			return probeQuery("target", "http://"+hostOf(e.broker.plain)+"/wrong-prefix")(e)
		}, host: "127.0.0.1", logs: []string{listFailed, "answered 404 Not Found", "path prefix", "Not Found"}},
		brokerFail("500", "500", "answered 500 Internal Server Error", "badarg"),
		brokerFail("503 with an HTML body", "503-html", "answered 503 Service Unavailable: text/html body of 139 bytes, not shown"),
		brokerFail("200 with an HTML page", "200-html", "invalid JSON at offset 0"),
		brokerFail("200 with an empty body", "200-empty", "truncated JSON"),
		brokerFail("wrong type: name is a number", "type-name-number", `queue field \"name\"`, "must be a string, found a number"),
		brokerFail("wrong type: count is a string", "type-count-string", `queue field \"messages\"`, "found a string"),
		brokerFail("wrong type: count is a fraction", "type-count-float", `queue field \"messages\"`, "fraction"),
		brokerFail("wrong type: count is negative", "type-count-neg", `queue field \"messages\"`, "negative"),
		brokerFail("wrong type: count is an object", "type-count-object", `queue field \"messages_ready\"`, "found an object"),
		brokerFail("wrong type: object without items", "type-top-object", "reading queue listing"),
		brokerFail("wrong type: queue is an array", "type-element-array", "reading queue listing"),
		brokerFail("nesting too deep", "deep-nesting", "nested deeper"),
		brokerFail("truncated JSON", "truncated", "truncated JSON"),
		brokerFail("connection cut mid-body", "cut-connection", "reading queue listing", "unexpected EOF"),
		func() faultCase {
			c := brokerFail("redirect to another host", "redirect-away", "refusing redirect to http://localhost:")
			c.noRequest = []string{"redirect-target"}
			return c
		}(),
		func() faultCase {
			c := brokerFail("endless slow body ends at the scrape deadline", "slow-endless", "timed out before the listing completed")
			c.header = timeoutHeader("2")
			c.within = 3500 * time.Millisecond
			return c
		}(),
		func() faultCase {
			c := brokerFail("2 GB body stops at --rabbitmq.max-response-bytes", "2gb-body", "response body exceeds the configured maximum", "67108864 bytes", "--rabbitmq.max-response-bytes")
			c.heavy, c.within = true, 30*time.Second
			c.check = checkStreamStopped("2gb-body", 2*maxBodyBytes)
			return c
		}(),
		func() faultCase {
			c := brokerFail("2 GB queue name stops at the string bound", "2gb-string", "longer than 65536 bytes")
			c.heavy, c.within = true, 30*time.Second
			c.check = checkStreamStopped("2gb-string", maxBodyBytes)
			return c
		}(),
		{name: "missing count fields", query: caseTarget("missing-counts"), success: 1, host: "127.0.0.1",
			logs: []string{`msg="listed queues"`, "queues=4", "missing_counts=2"},
			check: func(t *testing.T, e *faultEnv, res response, got map[string]float64) {
				queuesExact(e.broker.casesListing("missing-counts"))(t, e, res, got)
				h := map[string]string{"host": "127.0.0.1"}
				if got[scrapetest.KeyOf("rabbitmq_queues", h)] != 4 || got[scrapetest.KeyOf("rabbitmq_queues_missing_counts", h)] != 2 {
					t.Errorf("rabbitmq_queues / _missing_counts wrong:\n%s", res.body)
				}
			}},
		{name: "10 KB queue and vhost names", query: caseTarget("huge-names"), success: 1, host: "127.0.0.1",
			logs: []string{`msg="listed queues"`, "queues=3"},
			check: func(t *testing.T, e *faultEnv, res response, got map[string]float64) {
				queuesExact(hugeNamesListing)(t, e, res, got)
				if !strings.Contains(res.body, strings.ReplaceAll(hugeName, `"`, `\"`)) {
					t.Error("the 10 KB name is not in the output verbatim (escaped)")
				}
			}},
		{name: "unicode and control characters", query: caseTarget("unicode"), success: 1, host: "127.0.0.1",
			logs: []string{`msg="listed queues"`, "queues=21"}, check: func(t *testing.T, e *faultEnv, res response, got map[string]float64) {
				queuesExact(unicodeListing)(t, e, res, got)
				if !strings.Contains(res.body, "name=\"raw invalid \ufffd\ufffd utf8\"") {
					t.Error("invalid UTF-8 was not replaced with U+FFFD")
				}
			}},
		{name: "name exactly at the string bound", query: caseTarget("string-bound"), success: 1, host: "127.0.0.1",
			logs: []string{`msg="listed queues"`, "queues=1"}, check: func(t *testing.T, e *faultEnv, res response, got map[string]float64) {
				queuesExact(stringBoundListing(stringBound))(t, e, res, got)
			}},
		brokerFail("name one byte over the string bound", "string-over", "longer than 65536 bytes"),

		// Request side.
		{name: "no target: RABBITMQ_HOST", query: probeQuery(), success: 1, host: "127.0.0.1",
			logs: []string{`msg="listed queues"`, "queues=1"},
			check: func(t *testing.T, e *faultEnv, res response, got map[string]float64) {
				if e.broker.password("default") != envSecret {
					t.Error("the default target did not get the env password")
				}
			}},
		{name: "garbled target", query: probeQuery("target", "http://[::1"), status: 400, body: []string{"invalid target"}},
		{name: "target with a space", query: probeQuery("target", "rabbit a"), status: 400, body: []string{"invalid target", "white space"}},
		{name: "unsupported scheme", query: func(e *faultEnv) string {
			return probeQuery("target", "ftp://"+hostOf(e.broker.plain)+"/c/ok")(e)
		}, status: 400, body: []string{`scheme "ftp" is not supported`}, noRequest: []string{"ok"}},
		{name: "userinfo in target", query: func(e *faultEnv) string {
			return probeQuery("target", "http://"+leakUser+":"+url.PathEscape(envSecret)+"@"+hostOf(e.broker.plain)+"/c/userinfo")(e)
		}, status: 400, body: []string{"must not contain user information"}, noRequest: []string{"userinfo"}},
		{name: "target not allowed for env credentials", query: func(e *faultEnv) string {
			return probeQuery("target", "http://localhost:"+portOf(e.broker.plain)+"/c/forbidden")(e)
		}, status: 403, body: []string{"not allowed", "--probe.allowed-targets"}, noRequest: []string{"forbidden"}},
		{name: "target not allowed for the auth module", query: func(e *faultEnv) string {
			return probeQuery("target", "http://localhost:"+portOf(e.broker.plain)+"/c/forbidden-mod", "auth_module", "leak")(e)
		}, status: 403, body: []string{"not allowed for auth_module", "auth_modules.leak.targets"}, noRequest: []string{"forbidden-mod"}},
		{name: "unknown auth module", query: caseTarget("ok", "auth_module", "nope"), status: 400, body: []string{`unknown auth_module "nope"`}},
		{name: "oversized query", query: func(e *faultEnv) string { return "target=" + strings.Repeat("a", 5000) }, status: 414, body: []string{"longer than 4096"}},
		{name: "query with bad escapes", query: func(e *faultEnv) string { return "target=%zz&auth_module=leak" }, status: 400,
			body: []string{"invalid query string"}},
		{name: "query with a semicolon", query: func(e *faultEnv) string { return "target=x;auth_module=leak" }, status: 400,
			body: []string{"invalid query string"}},
	}
	for _, h := range []string{"soon", "-1", "0", "NaN", "+Inf", "1e400", "90000"} {
		cases = append(cases, faultCase{name: "bad timeout header " + h, query: caseTarget("ok"), header: timeoutHeader(h),
			status: 400, body: []string{"invalid X-Prometheus-Scrape-Timeout-Seconds header"}})
	}
	return cases
}

func portOf(s *httptest.Server) string {
	_, port, _ := net.SplitHostPort(hostOf(s))
	return port
}

// casesListing returns the body a JSON case serves, for reference decoding.
func (b *faultBroker) casesListing(key string) string {
	rec := httptest.NewRecorder()
	b.cases[key](rec, httptest.NewRequest(http.MethodGet, "/", nil))
	return rec.Body.String()
}

// checkStreamStopped asserts the fake stopped streaming soon after the
// exporter gave up: it wrote far less than it meant to, and its handler ended.
func checkStreamStopped(key string, maxWritten int64) func(*testing.T, *faultEnv, response, map[string]float64) {
	return func(t *testing.T, e *faultEnv, res response, got map[string]float64) {
		var n int64
		waitFor(t, 10*time.Second, func() bool {
			var ok bool
			n, ok = e.broker.bytesWritten(key)
			return ok
		})
		t.Logf("fake broker wrote %d MiB of the 2 GiB before the exporter hung up", n>>20)
		if n > maxWritten {
			t.Errorf("the fake wrote %d bytes: the exporter kept reading past its bound", n)
		}
	}
}

// vmHWM is the peak resident set size of a process, from /proc.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

// run performs one case and returns the response; every body is kept for the
// leak test.
func (e *faultEnv) run(t *testing.T, c faultCase, query string) (response, time.Duration) {
	t.Helper()
	before := map[string]int{}
	for _, k := range c.noRequest {
		before[k] = e.broker.count(k)
	}
	start := time.Now()
	res := e.p.get(t, "/probe?"+query, c.header)
	elapsed := time.Since(start)
	e.mu.Lock()
	e.bodies = append(e.bodies, res.body)
	e.mu.Unlock()
	for _, k := range c.noRequest {
		if n := e.broker.count(k); n != before[k] {
			t.Errorf("the fake broker got %d request(s) for %q; nothing may be sent", n-before[k], k)
		}
	}
	return res, elapsed
}

func (e *faultEnv) logLine(offset int, subs []string) (string, bool) {
	return waitLogLine(e.p, offset, subs)
}

// waitLogLine waits for a log line after offset holding every substring,
// since the exporter's stderr reaches the buffer through a pipe. Polled, with
// a cap a busy machine cannot miss (the pipe's reader is a goroutine of this
// test process, which may be busy streaming a fake broker's 2 GB).
func waitLogLine(p *exporterProc, offset int, subs []string) (string, bool) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		logs := p.logs.String()
		if offset > len(logs) {
			offset = len(logs)
		}
		for line := range strings.SplitSeq(logs[offset:], "\n") {
			all := true
			for _, s := range subs {
				if !strings.Contains(line, s) {
					all = false
					break
				}
			}
			if all {
				return line, true
			}
		}
		if time.Now().After(deadline) {
			return "", false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// goroutines reads go_goroutines from /metrics after closing every idle
// keep-alive connection on both sides, so only real leftovers count.
func (e *faultEnv) goroutines(t *testing.T) float64 {
	t.Helper()
	e.broker.plain.CloseClientConnections()
	e.broker.tls.CloseClientConnections()
	e.p.client.CloseIdleConnections()
	time.Sleep(100 * time.Millisecond)
	return e.p.get(t, "/metrics", nil).samples(t)["go_goroutines"]
}

func TestFaultMatrix(t *testing.T) {
	e := startFaultEnv(t)
	pid := e.p.cmd.Process.Pid
	// A first probe sets up the transports, so the baseline is not inflated later.
	e.p.get(t, "/probe", nil)
	baseline := e.goroutines(t)
	t.Logf("exporter at start: VmHWM %d MiB, %v goroutines", vmHWM(t, pid)>>20, baseline)

	for _, c := range faultCases() {
		t.Run(c.name, func(t *testing.T) {
			if c.heavy {
				testbed.RequireFull(t, "a multi-GB stream")
			}
			logStart := len(e.p.logs.String())
			hwmBefore := vmHWM(t, pid)
			query := c.query(e)
			res, elapsed := e.run(t, c, query)
			within := c.within
			if within == 0 {
				within = 10 * time.Second
			}
			if elapsed > within {
				t.Errorf("answer took %v, want at most %v", elapsed, within)
			}
			status := c.status
			if status == 0 {
				status = 200
			}
			if res.status != status {
				t.Fatalf("status %d, want %d: %.500s", res.status, status, res.body)
			}
			if status != 200 {
				line := strings.TrimSuffix(res.body, "\n")
				if strings.ContainsAny(line, "\r\n") {
					t.Errorf("error body is not one line: %q", res.body)
				}
				for _, s := range c.body {
					if !strings.Contains(line, s) {
						t.Errorf("body %q lacks %q", line, s)
					}
				}
				return
			}
			got := res.samples(t)
			if v, ok := got["probe_success"]; !ok || v != c.success {
				t.Errorf("probe_success = %v (present %v), want %v", v, ok, c.success)
			}
			if _, ok := got["probe_duration_seconds"]; !ok {
				t.Error("no probe_duration_seconds")
			}
			if v, ok := got[scrapetest.KeyOf("rabbitmq_up", map[string]string{"host": c.host})]; !ok || v != c.success {
				t.Errorf("rabbitmq_up{host=%q} = %v (present %v), want %v\n%.1000s", c.host, v, ok, c.success, res.body)
			}
			if c.success == 0 {
				if strings.Contains(res.body, "rabbitmq_individual_queue") || strings.Contains(res.body, "rabbitmq_queues") {
					t.Errorf("a failed listing yielded queue samples:\n%.1000s", res.body)
				}
			}
			subs := c.logs
			if tgt := targetOf(query, e); tgt != "" {
				subs = append([]string{"target=" + tgt}, subs...)
			}
			if line, ok := e.logLine(logStart, subs); !ok {
				t.Errorf("no log line with %q; new log lines:\n%s", subs, e.p.logs.String()[logStart:])
			} else {
				t.Logf("log: %.400s", line)
			}
			if c.check != nil {
				c.check(t, e, res, got)
			}
			if c.heavy {
				hwm := vmHWM(t, pid)
				t.Logf("exporter VmHWM %d MiB (before this case %d MiB), answer in %v", hwm>>20, hwmBefore>>20, elapsed.Round(time.Millisecond))
				if hwm >= rssCeilingMiB<<20/2 {
					t.Errorf("peak RSS %d MiB, want well under %d MiB", hwm>>20, rssCeilingMiB)
				}
			}
		})
	}

	// Nothing may panic, hang or leak: the process still serves, its log has
	// no panic, the fakes' handlers all ended and the goroutines came back.
	if res := e.p.get(t, "/-/healthy", nil); res.status != 200 {
		t.Fatalf("/-/healthy after the matrix: %d", res.status)
	}
	waitFor(t, 10*time.Second, func() bool { return e.broker.running.Load() == 0 })
	if logs := e.p.logs.String(); strings.Contains(strings.ToLower(logs), "panic") {
		t.Errorf("the exporter log mentions a panic:\n%s", logs)
	}
	var after float64
	deadline := time.Now().Add(10 * time.Second)
	for {
		after = e.goroutines(t)
		if after <= baseline+2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("exporter after the matrix: VmHWM %d MiB, %v goroutines (baseline %v)", vmHWM(t, pid)>>20, after, baseline)
	if after > baseline+2 {
		t.Errorf("goroutines %v after the matrix, baseline %v: something leaked", after, baseline)
	}
}

// targetOf is the canonical target a query names (as the exporter logs it),
// or RABBITMQ_HOST's when it names none.
func targetOf(query string, e *faultEnv) string {
	v, _ := url.ParseQuery(query)
	raw := v.Get("target")
	if raw == "" {
		raw = e.broker.target("default")
	}
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	if u.Port() == "" {
		port := "15672"
		if u.Scheme == "https" {
			port = "15671"
		}
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	return u.Scheme + "://" + u.Host + strings.TrimRight(u.EscapedPath(), "/")
}

// TestTwoGigabyteListingStreams lets a whole 2 GB listing through (bound
// raised; 60 KB of every queue object is a field to skip) to show the decoder
// streams: the exporter's peak RSS stays far below the body size.
func TestTwoGigabyteListingStreams(t *testing.T) {
	testbed.RequireFull(t, "streams 2 GB")
	b := newFaultBroker(t)
	p := startExporter(t, []string{"RABBITMQ_HOST=" + b.target("2gb-padded")},
		"--rabbitmq.max-response-bytes=3GiB", "--probe.default-timeout=60s", "--no-metrics.queues")
	start := time.Now()
	res := p.get(t, "/probe", nil)
	elapsed := time.Since(start)
	got := res.samples(t)
	h := map[string]string{"host": "127.0.0.1"}
	n, ok := b.bytesWritten("2gb-padded")
	queues, _ := b.bytesWritten("2gb-padded-queues")
	if !ok || n < twoGB {
		t.Fatalf("the fake wrote %d bytes, want the whole 2 GiB", n)
	}
	if got["probe_success"] != 1 || got[scrapetest.KeyOf("rabbitmq_up", h)] != 1 || got[scrapetest.KeyOf("rabbitmq_queues", h)] != float64(queues) {
		t.Fatalf("want a successful probe with all %d queues:\n%.1000s\n%s", queues, res.body, p.logs)
	}
	if last := scrapetest.KeyOf("rabbitmq_individual_queue_messages", map[string]string{"host": "127.0.0.1", "vhost": "/", "name": fmt.Sprintf("q-%d", queues-1)}); got[last] != 1 {
		t.Errorf("the last queue of the listing, %s, is missing", last)
	}
	hwm := vmHWM(t, p.cmd.Process.Pid)
	t.Logf("2 GiB listing decoded in %v (%.0f MiB/s); exporter VmHWM %d MiB", elapsed.Round(time.Millisecond), float64(n>>20)/elapsed.Seconds(), hwm>>20)
	if hwm >= rssCeilingMiB<<20/2 {
		t.Errorf("peak RSS %d MiB while streaming 2 GiB, want well under %d MiB", hwm>>20, rssCeilingMiB)
	}
}
