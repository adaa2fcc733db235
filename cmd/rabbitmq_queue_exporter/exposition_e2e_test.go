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
// registry main wires (Go and process collectors included), as Prometheus 2
// and 3 and curl ask, with and without gzip: each answer must be what its
// headers say, pass promtool and hold the queue sample. A few
// representative requests, one per answer format and endpoint: the web
// package's tests answer every Accept header Prometheus sends and run
// promtool on every format (those in the full lane).
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

	const (
		prom3Default = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
		prom2Native  = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
		prom3Proto   = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,*/*;q=0.5"
		prom2OM0     = "application/openmetrics-text;version=0.0.1;q=0.5,*/*;q=0.4"
	)
	for _, c := range []struct{ path, prometheus, accept, encoding, want string }{
		{"/metrics", "3.x default", prom3Default, "gzip", "application/openmetrics-text; version=1.0.0"},
		{"/metrics", "curl", "*/*", "identity", "text/plain; version=0.0.4"},
		{"/probe", "2.42 native histograms", prom2Native, "identity", "application/openmetrics-text; version=1.0.0"},
		{"/probe", "3.x scrape_protocols [PrometheusProto]", prom3Proto, "gzip", "text/plain; version=0.0.4"},
		{"/probe", "2.50 scrape_protocols [OpenMetricsText0.0.1]", prom2OM0, "identity", "application/openmetrics-text; version=0.0.1"},
	} {
		t.Run(c.path+" "+c.prometheus+" "+c.encoding, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, p.url(c.path), nil)
			req.Header.Set("Accept", c.accept)
			req.Header.Set("Accept-Encoding", c.encoding)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("status %d, %v", resp.StatusCode, err)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, c.want+";") && ct != c.want {
				t.Errorf("Content-Type %q, want %s", ct, c.want)
			}
			if got := resp.Header.Get("Content-Encoding"); (got == "gzip") != (c.encoding == "gzip") {
				t.Errorf("Content-Encoding %q for Accept-Encoding %s", got, c.encoding)
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
