package prober

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
)

const (
	scrapeTimeoutHeader = "X-Prometheus-Scrape-Timeout-Seconds"
	maxQueryBytes       = 4096
)

// Handler serves /probe and /metrics.
type Handler struct {
	Logger         *slog.Logger
	Prober         *Prober
	DefaultTarget  config.Target
	DefaultModule  *Module
	TimeoutOffset  time.Duration // subtracted from the scraper's timeout to leave time to answer
	DefaultTimeout time.Duration // when the scraper sends no timeout header
	Exporter       prometheus.Gatherer
	MetricsQueues  bool // include DefaultTarget's queues in /metrics
}

// Probe serves /probe?target=…: a fresh registry per request, one broker.
func (h *Handler) Probe(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if len(r.URL.RawQuery) > maxQueryBytes {
		http.Error(w, fmt.Sprintf("query string is longer than %d bytes", maxQueryBytes), http.StatusRequestURITooLong)
		return
	}
	params := r.URL.Query()
	target := h.DefaultTarget
	if raw := params.Get("target"); raw != "" {
		t, err := config.ParseTarget(raw)
		if err != nil {
			http.Error(w, "invalid target: "+err.Error(), http.StatusBadRequest)
			return
		}
		target = t
	}
	module := h.DefaultModule
	timeout, err := scrapeTimeout(r.Header.Get(scrapeTimeoutHeader), h.TimeoutOffset, h.DefaultTimeout)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()

	registry := prometheus.NewRegistry()
	success := prometheus.NewGauge(prometheus.GaugeOpts{Name: "probe_success", Help: "1 if the probe succeeded, 0 if not."})
	duration := prometheus.NewGauge(prometheus.GaugeOpts{Name: "probe_duration_seconds", Help: "How long the probe took, in seconds."})
	registry.MustRegister(success, duration)

	logger := h.Logger.With("target", target.String())
	queues, ok := h.Prober.ProbeQueues(ctx, target, module, registry, logger)
	if ok {
		success.Set(1)
	}
	duration.Set(time.Since(start).Seconds())
	writeMetrics(w, r, logger, registry, queues)
}

// Metrics serves /metrics: the exporter's own metrics plus, unless disabled,
// the queues of the configured broker.
func (h *Handler) Metrics(w http.ResponseWriter, r *http.Request) {
	gatherers := prometheus.Gatherers{h.Exporter}
	if !h.MetricsQueues {
		writeMetrics(w, r, h.Logger, gatherers, nil)
		return
	}
	timeout, err := scrapeTimeout(r.Header.Get(scrapeTimeoutHeader), h.TimeoutOffset, h.DefaultTimeout)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	registry := prometheus.NewRegistry()
	queues, _ := h.Prober.ProbeQueues(ctx, h.DefaultTarget, h.DefaultModule, registry, h.Logger.With("target", h.DefaultTarget.String()))
	writeMetrics(w, r, h.Logger, append(gatherers, registry), queues)
}

// scrapeTimeout honours Prometheus' timeout header minus offset, like
// blackbox_exporter, so the answer arrives before Prometheus gives up.
func scrapeTimeout(header string, offset, fallback time.Duration) (time.Duration, error) {
	if header == "" {
		return fallback, nil
	}
	seconds, err := strconv.ParseFloat(header, 64)
	if err != nil || seconds <= 0 || math.IsNaN(seconds) || math.IsInf(seconds, 0) || seconds > 24*3600 {
		return 0, fmt.Errorf("invalid %s header %q: want a positive number of seconds", scrapeTimeoutHeader, truncate(header, 32))
	}
	timeout := time.Duration(seconds * float64(time.Second))
	if timeout > offset {
		timeout -= offset
	}
	return timeout, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
