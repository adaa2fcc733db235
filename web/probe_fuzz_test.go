package web

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/scrapetest"
)

// FuzzProbeQuery sends arbitrary query strings and headers through the whole
// /probe handler. Whatever comes in, it must not panic and must answer 200
// (a parsable exposition or debug page), or 400, 403 or 414 with one line.
// Credentials are allowed only for one in-process fake broker, so no input
// can make the fuzzer send requests anywhere else.
func FuzzProbeQuery(f *testing.F) {
	broker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `[{"name":"q \"1\"","vhost":"/","messages":3,"messages_ready":2,"messages_unacknowledged":1},{"name":"s","vhost":"v"}]`)
	}))
	f.Cleanup(broker.Close)
	host := strings.TrimPrefix(broker.URL, "http://")
	user, pw := "u", "fuzz-secret"
	h, _ := newHandler(f, config.EnvFlags{Host: host, User: &user, Password: &pw}, `
auth_modules:
  m:
    username: u
    password: fuzz-secret
    targets: ['`+regexp.QuoteMeta(host)+`']
`)
	h.Logger = slog.New(slog.DiscardHandler)
	h.DefaultTimeout = 2 * time.Second

	for _, s := range [][4]string{
		{"", "", "", ""},
		{"target=" + url.QueryEscape(host), "2", "application/openmetrics-text;version=1.0.0", "gzip"},
		{"target=" + url.QueryEscape("http://"+host+"/"), "0.7", "text/plain;version=0.0.4", "gzip;q=0"},
		{"debug=true&auth_module=m", "", "", ""},
		{"auth_module=nope&target=x", "1e400", "*/*", "br, gzip;q=0.5"},
		{"target=%zz", "NaN", "", ""},
		{"target=a;b", "-1", "", ""},
		{"target=http://u:p@" + host, "", "", ""},
		{"target=ftp://x&target=y", "", "", ""},
		{"target=" + strings.Repeat("x", 5000), "", "", ""},
		{"target=localhost", "", "", ""},
		{"target=[::1]:1", "", "", ""},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, query, timeout, accept, acceptEncoding string) {
		req := httptest.NewRequest(http.MethodGet, "/probe", nil)
		req.URL.RawQuery = query
		for k, v := range map[string]string{"X-Prometheus-Scrape-Timeout-Seconds": timeout, "Accept": accept, "Accept-Encoding": acceptEncoding} {
			if v != "" {
				req.Header.Set(k, v)
			}
		}
		rec := httptest.NewRecorder()
		h.Probe(rec, req)
		body := rec.Body.Bytes()
		switch rec.Code {
		case http.StatusOK:
		case http.StatusBadRequest, http.StatusForbidden, http.StatusRequestURITooLong:
			if line := bytes.TrimSuffix(body, []byte("\n")); bytes.ContainsAny(line, "\r\n") || len(line) == 0 {
				t.Fatalf("%d answer is not one line: %q", rec.Code, body)
			}
			if bytes.Contains(body, []byte("fuzz-secret")) {
				t.Fatalf("answer holds the password: %q", body)
			}
			return
		default:
			t.Fatalf("status %d for query %q: %q", rec.Code, query, body)
		}
		plain, err := scrapetest.Plain(rec.Header(), body)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(plain, []byte("fuzz-secret")) {
			t.Fatalf("answer holds the password")
		}
		if !strings.Contains(rec.Header().Get("Content-Type"), "version=") {
			return // the debug page
		}
		mfs, err := scrapetest.Decode(rec.Header(), body)
		if err != nil {
			t.Fatalf("answer does not decode as its headers say: %v\n%s", err, plain)
		}
		names := map[string]bool{}
		for _, mf := range mfs {
			names[mf.GetName()] = true
		}
		if !names["probe_success"] || !names["rabbitmq_up"] {
			t.Fatalf("answer lacks probe_success or rabbitmq_up:\n%s", plain)
		}
	})
}
