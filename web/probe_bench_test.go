package web

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/benchutil"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/fakeapi"
)

// discardResponse is a ResponseWriter that keeps nothing (or passes the body
// to w), so the benchmark measures the handler and not a growing recorder buffer.
type discardResponse struct {
	header http.Header
	status int
	n      int64
	w      io.Writer
}

func (d *discardResponse) Header() http.Header  { return d.header }
func (d *discardResponse) WriteHeader(code int) { d.status = code }
func (d *discardResponse) Write(p []byte) (int, error) {
	d.n += int64(len(p))
	if d.w != nil {
		return d.w.Write(p)
	}
	return len(p), nil
}

// BenchmarkProbe runs the whole /probe handler against a fake management API
// over loopback HTTP: request, streaming decode, QueueSet, exposition.
// MB/s is broker JSON consumed; resp-bytes is the exposition written.
func BenchmarkProbe(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		for _, accept := range []struct{ name, header string }{
			{"text", ""},
			{"openmetrics", "application/openmetrics-text;version=1.0.0"},
		} {
			b.Run(fmt.Sprintf("%dk/%s", n/1000, accept.name), func(b *testing.B) {
				benchProbe(b, n, accept.header)
			})
		}
	}
}

func benchProbe(b *testing.B, n int, accept string) {
	api := fakeapi.NewHandler(fakeapi.Generate(fakeapi.Options{Queues: n, Vhosts: 10, StreamEvery: fakeapi.DefaultStreamEvery}), "monitor", testPassword)
	srv := httptest.NewServer(api)
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	user, pw := "monitor", testPassword
	h, _ := newHandler(b, config.EnvFlags{Host: u.Host, User: &user, Password: &pw}, "")
	h.Logger = slog.New(slog.DiscardHandler)
	h.DefaultTimeout = time.Minute
	probeLoop(b, h, accept, n, len(api.Body()))
}

// probeLoop times h.Probe, n queues and in bytes read from the broker per probe.
func probeLoop(b *testing.B, h *Handler, accept string, n, in int) {
	b.ReportAllocs()
	b.SetBytes(int64(in))
	var written int64
	cpu0 := benchutil.CPUTime()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodGet, "/probe", nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		w := &discardResponse{header: http.Header{}}
		h.Probe(w, req)
		if w.status != 0 && w.status != http.StatusOK {
			b.Fatalf("status %d", w.status)
		}
		written = w.n
	}
	benchutil.ReportCPU(b, cpu0)
	if want := int64(n) * 100; written < want {
		b.Fatalf("wrote only %d bytes for %d queues; did the probe fail?", written, n)
	}
	b.ReportMetric(float64(written), "resp-bytes")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/queue")
}

// BenchmarkProbePlugin runs the whole /probe handler with the plugin source
// against one fake rabbitmq_prometheus endpoint (configured, so no
// discovery) over loopback HTTP. MB/s is plugin text consumed.
func BenchmarkProbePlugin(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		for _, style := range []fakeapi.PluginStyle{fakeapi.PluginRaw, fakeapi.PluginEscaped} {
			b.Run(fmt.Sprintf("%dk/%s", n/1000, style), func(b *testing.B) {
				body := fakeapi.GeneratePlugin(fakeapi.Options{Queues: n, Vhosts: 10}, style)
				plugin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", "text/plain; version=0.0.4")
					w.Write(body)
				}))
				defer plugin.Close()
				api := httptest.NewServer(http.NotFoundHandler()) // the vhost list is optional
				defer api.Close()
				u, _ := url.Parse(api.URL)
				user, pw := "monitor", testPassword
				h, _ := newHandler(b, config.EnvFlags{Host: u.Host, User: &user, Password: &pw, Source: "prometheus", PluginEndpoints: plugin.URL}, "")
				h.Logger = slog.New(slog.DiscardHandler)
				h.DefaultTimeout = time.Minute
				probeLoop(b, h, "", n, len(body))
			})
		}
	}
}
