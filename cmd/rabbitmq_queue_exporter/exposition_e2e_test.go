package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/scrapetest"
)

// TestAnswersAsPrometheusAsks scrapes the built exporter, with the exporter
// registry main wires (Go and process collectors included), the way
// Prometheus 2 and 3 ask in their main configurations, with and without
// gzip: each answer must be what its headers say and pass promtool.
// web package's tests cover every Accept header Prometheus sends.
func TestAnswersAsPrometheusAsks(t *testing.T) {
	broker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `[{"name":"q \"1\"","vhost":"/","messages":3,"messages_ready":2,"messages_unacknowledged":1},{"name":"s","vhost":"v"}]`)
	}))
	defer broker.Close()
	u, _ := url.Parse(broker.URL)
	p := startExporter(t, []string{"RABBITMQ_HOST=" + u.Host})
	// Transparent decompression off: the test sees the answer as sent.
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableCompression: true}}

	accepts := []struct{ prometheus, accept, want string }{
		{"2.42 default", "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", "application/openmetrics-text"},
		{"2.42 native histograms", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", "application/openmetrics-text"},
		{"3.x default", "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2", "application/openmetrics-text"},
		{"3.x scrape_native_histograms", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1", "application/openmetrics-text"},
		{"3.x scrape_protocols [PrometheusProto]", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,*/*;q=0.5", "text/plain"},
		{"3.x scrape_protocols [PrometheusText1.0.0]", "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.6,*/*;q=0.5", "text/plain"},
		{"curl", "*/*", "text/plain"},
	}
	for _, path := range []string{"/metrics", "/probe"} {
		for _, a := range accepts {
			for _, encoding := range []string{"gzip", "identity"} {
				t.Run(path+" "+a.prometheus+" "+encoding, func(t *testing.T) {
					req, _ := http.NewRequest(http.MethodGet, p.url(path), nil)
					req.Header.Set("Accept", a.accept)
					req.Header.Set("Accept-Encoding", encoding)
					resp, err := client.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					body, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err != nil || resp.StatusCode != 200 {
						t.Fatalf("status %d, %v", resp.StatusCode, err)
					}
					if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, a.want+";") {
						t.Errorf("Content-Type %q, want %s", ct, a.want)
					}
					if got := resp.Header.Get("Content-Encoding"); (got == "gzip") != (encoding == "gzip") {
						t.Errorf("Content-Encoding %q for Accept-Encoding %s", got, encoding)
					}
					if !strings.Contains(resp.Header.Get("Vary"), "Accept-Encoding") {
						t.Errorf("Vary %q", resp.Header.Get("Vary"))
					}
					s := scrapetest.Check(t, resp.Header, body)
					if s[scrapetest.Key("rabbitmq_individual_queue_messages", "host", "127.0.0.1", "vhost", "/", "name", `q "1"`)] != 3 || s[scrapetest.Key("rabbitmq_up", "host", "127.0.0.1")] != 1 {
						t.Errorf("queue sample or rabbitmq_up missing: %v", s)
					}
				})
			}
		}
	}
}
