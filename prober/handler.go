package prober

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
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
	TimeoutOffset  time.Duration // subtracted from the scraper's timeout to leave time to answer
	DefaultTimeout time.Duration // when the scraper sends no timeout header
	Exporter       prometheus.Gatherer
	MetricsQueues  bool   // include DefaultTarget's queues in /metrics
	ConfigFile     string // named in 403 answers, so the operator knows where to allow a target

	modules atomic.Pointer[Modules]
	// Every answer needs a 64 KiB buffer, and a gzip compressor of about 1 MiB
	// when the scraper asks for compression (Prometheus does by default);
	// reusing them spares the GC several MB per second on a busy exporter.
	bufPool, gzipPool sync.Pool
}

// SetModules installs a configuration generation; probes already running keep theirs.
func (h *Handler) SetModules(m *Modules) { h.modules.Store(m) }

// Modules returns the configuration generation in use.
func (h *Handler) Modules() *Modules { return h.modules.Load() }

// Probe serves /probe?target=…&auth_module=…: a fresh registry per request, one broker.
func (h *Handler) Probe(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if len(r.URL.RawQuery) > maxQueryBytes {
		http.Error(w, fmt.Sprintf("query string is longer than %d bytes", maxQueryBytes), http.StatusRequestURITooLong)
		return
	}
	// URL.Query drops malformed pairs silently, which would probe RABBITMQ_HOST
	// (or use the env credentials) when the target or auth_module was mistyped.
	params, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		http.Error(w, "invalid query string: "+err.Error(), http.StatusBadRequest)
		return
	}
	target := h.DefaultTarget
	if raw := params.Get("target"); raw != "" {
		t, err := config.ParseTarget(raw)
		if err != nil {
			http.Error(w, "invalid target: "+err.Error(), http.StatusBadRequest)
			return
		}
		target = t
	}
	timeout, err := scrapeTimeout(r.Header.Get(scrapeTimeoutHeader), h.TimeoutOffset, h.DefaultTimeout)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	module, status, err := h.moduleFor(params.Get("auth_module"), target)
	if err != nil {
		http.Error(w, err.Error(), status)
		return
	}
	if module.Timeout > 0 && module.Timeout < timeout {
		timeout = module.Timeout
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()

	debug := params.Get("debug") == "true"
	var debugLog bytes.Buffer
	logger := h.Logger.With("target", target.String())
	if debug {
		logger = slog.New(teeHandler{h.Logger.Handler(), slog.NewTextHandler(&debugLog, &slog.HandlerOptions{Level: slog.LevelDebug})}).With("target", target.String())
	}

	registry := prometheus.NewRegistry()
	success := prometheus.NewGauge(prometheus.GaugeOpts{Name: "probe_success", Help: "1 if the probe succeeded, 0 if not."})
	duration := prometheus.NewGauge(prometheus.GaugeOpts{Name: "probe_duration_seconds", Help: "How long the probe took, in seconds."})
	registry.MustRegister(success, duration)

	logger.Debug("probing", "auth_module", module.Name, "timeout", timeout)
	queues, ok := h.Prober.ProbeQueues(ctx, target, module, registry, logger)
	if ok {
		success.Set(1)
	}
	duration.Set(time.Since(start).Seconds())
	logger.Debug("probe finished", "success", ok, "duration_seconds", time.Since(start).Seconds())
	if debug {
		writeDebug(w, logger, &debugLog, registry, queues, module)
		return
	}
	h.writeMetrics(w, r, logger, registry, queues)
}

// moduleFor picks the credentials for a probe and checks that the operator
// allowed sending them to target. Nothing is sent anywhere before this passes.
func (h *Handler) moduleFor(name string, target config.Target) (*Module, int, error) {
	mods := h.Modules()
	if name == "" {
		if !mods.Env.Allows(target) {
			return nil, http.StatusForbidden, fmt.Errorf("target %q (%s) is not allowed for the RABBITMQ_HOST credentials: add a matching pattern to --probe.allowed-targets / RABBITMQ_PROBE_ALLOWED_TARGETS, or use an auth_module", target.String(), target.HostPort())
		}
		return mods.Env, 0, nil
	}
	m, ok := mods.ByName[name]
	if !ok {
		return nil, http.StatusBadRequest, fmt.Errorf("unknown auth_module %q", truncate(name, 64))
	}
	if !m.Allows(target) {
		where := "the config file"
		if h.ConfigFile != "" {
			where = h.ConfigFile
		}
		return nil, http.StatusForbidden, fmt.Errorf("target %q (%s) is not allowed for auth_module %q: add a matching pattern to auth_modules.%s.targets in %s", target.String(), target.HostPort(), name, name, where)
	}
	return m, 0, nil
}

// Metrics serves /metrics: the exporter's own metrics plus, unless disabled,
// the queues of the configured broker.
func (h *Handler) Metrics(w http.ResponseWriter, r *http.Request) {
	gatherers := prometheus.Gatherers{h.Exporter}
	if !h.MetricsQueues {
		h.writeMetrics(w, r, h.Logger, gatherers, nil)
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
	queues, _ := h.Prober.ProbeQueues(ctx, h.DefaultTarget, h.Modules().Env, registry, h.Logger.With("target", h.DefaultTarget.String()))
	h.writeMetrics(w, r, h.Logger, append(gatherers, registry), queues)
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
