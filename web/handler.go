package web

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/brokerhttp"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/pargzip"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source"
)

const (
	scrapeTimeoutHeader = "X-Prometheus-Scrape-Timeout-Seconds"
	maxQueryBytes       = 4096
)

// probeParams are the query parameters /probe understands. Any other is an
// error: a misspelt `targt=` must not silently probe RABBITMQ_HOST.
var probeParams = []string{"target", "auth_module", "debug"}

// Handler serves /probe and /metrics.
type Handler struct {
	Logger         *slog.Logger
	Lister         *source.Lister
	Config         *config.SafeConfig
	TimeoutOffset  time.Duration // subtracted from the scraper's timeout to leave time to answer
	DefaultTimeout time.Duration // when the scraper sends no timeout header
	MaxTimeout     time.Duration // cap on any probe's timeout, whatever the header says (0: none)
	Exporter       prometheus.Gatherer
	MetricsQueues  bool // include RABBITMQ_HOST's queues in /metrics
	// MaxRequests limits, per endpoint (/probe, /metrics), the listings
	// read and written at once (slots.go: shared by probes of one target and
	// module, not held for scrapers that stopped reading, some kept from slow
	// brokers); more wait until their deadline. 0: no limit.
	MaxRequests int
	// WriteTimeout bounds writing one answer, so a scraper that stops reading
	// releases the memory its answer holds. 0: no limit.
	WriteTimeout time.Duration
	// Refused counts refused probes by reason (NewRefusedCounter); nil: not
	// counted. Refusals are logged either way, rate-limited.
	Refused *prometheus.CounterVec

	refusalOnce sync.Once
	refusalLog  *refusalLog

	slotsOnce                sync.Once
	probeSlots, metricsSlots *slotPool
	// Every uncompressed answer needs a 64 KiB buffer; reusing them spares the
	// GC on a busy exporter. Gzip streams share the cores and their buffers
	// through one pargzip pool.
	bufPool  sync.Pool
	gzipOnce sync.Once
	gzip     *pargzip.Pool
}

// Probe serves /probe?target=…&auth_module=…: a fresh registry per request, one broker.
func (h *Handler) Probe(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	setVary(w.Header())
	params, status, err := probeQuery(r.URL.RawQuery)
	if err != nil {
		reason := reasonBadQuery
		if status == http.StatusRequestURITooLong {
			reason = reasonQueryTooLong
		}
		h.refuse(w, r, refusal{endpoint: "/probe", status: status, reason: reason, detail: err.Error()}, err.Error())
		return
	}
	gen := h.Config.Acquire()
	defer gen.Release()
	target := gen.Target
	moduleName := params.Get("auth_module")
	if raw := params.Get("target"); raw != "" {
		if target, err = brokerhttp.ParseTarget(raw); err != nil {
			h.refuse(w, r, refusal{endpoint: "/probe", status: http.StatusBadRequest, reason: reasonBadTarget, target: redactTarget(raw),
				module: moduleLabel(moduleName), detail: targetError(raw, err)}, "invalid target: "+err.Error())
			return
		}
	}
	timeout, err := h.timeout(r)
	if err != nil {
		h.refuse(w, r, refusal{endpoint: "/probe", status: http.StatusBadRequest, reason: reasonBadTimeout, target: target.String(), module: moduleLabel(moduleName), detail: err.Error()}, err.Error())
		return
	}
	module, status, err := moduleFor(gen, moduleName, target)
	if err != nil {
		reason := reasonUnknownModule
		if status == http.StatusForbidden {
			reason = reasonNotAllowed
		}
		h.refuse(w, r, refusal{endpoint: "/probe", status: status, reason: reason, target: target.String(), module: moduleLabel(moduleName), detail: err.Error()}, err.Error())
		return
	}
	if module.Timeout > 0 && module.Timeout < timeout {
		timeout = module.Timeout
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	slot, ok := h.slots(true).acquire(ctx, source.Key(target, module))
	if !ok {
		msg := fmt.Sprintf("too many concurrent probes (--web.max-requests=%d); none finished within the scrape timeout", h.MaxRequests)
		h.refuse(w, r, refusal{endpoint: "/probe", status: http.StatusServiceUnavailable, reason: reasonOverloaded, target: target.String(), module: moduleLabel(module.Name), detail: msg}, msg)
		return
	}
	defer h.releaseSlot(slot, h.Logger)

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
	listStart := time.Now()
	queues, ok := probeQueues(ctx, h.Lister, target, module, registry, logger)
	slot.listed(time.Since(listStart))
	if ok {
		success.Set(1)
	}
	duration.Set(time.Since(start).Seconds())
	logger.Debug("probe finished", "success", ok, "duration_seconds", time.Since(start).Seconds())
	aw := slot.writeTo(w)
	h.setWriteDeadline(w)
	if debug {
		writeDebug(aw, logger, &debugLog, registry, queues, module)
		return
	}
	h.writeMetrics(aw, r, logger, registry, queues)
}

// probeQuery parses /probe's query strictly: malformed pairs, unknown and
// repeated parameters are errors rather than silently ignored.
func probeQuery(raw string) (url.Values, int, error) {
	if len(raw) > maxQueryBytes {
		return nil, http.StatusRequestURITooLong, fmt.Errorf("query string is longer than %d bytes", maxQueryBytes)
	}
	params, err := url.ParseQuery(raw)
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("invalid query string: %w", err)
	}
	var unknown []string
	for k, v := range params {
		known := false
		for _, p := range probeParams {
			known = known || k == p
		}
		if !known {
			unknown = append(unknown, strconv.Quote(truncate(k, 32)))
			continue
		}
		if len(v) > 1 {
			return nil, http.StatusBadRequest, fmt.Errorf("query parameter %q is given %d times", k, len(v))
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, http.StatusBadRequest, fmt.Errorf("unknown query parameter %s (known: %s)", strings.Join(unknown, ", "), strings.Join(probeParams, ", "))
	}
	return params, 0, nil
}

// moduleFor picks the credentials for a probe and checks that the operator
// allowed sending them to target. Nothing is sent anywhere before this passes.
func moduleFor(gen *config.Generation, name string, target brokerhttp.Target) (*config.Module, int, error) {
	if name == "" {
		if err := gen.Env.Allows(target); err != nil {
			return nil, http.StatusForbidden, fmt.Errorf("target not allowed for the RABBITMQ_HOST credentials: %w (allow it there, or use an auth_module)", err)
		}
		return gen.Env, 0, nil
	}
	m, ok := gen.ByName[name]
	if !ok {
		return nil, http.StatusBadRequest, fmt.Errorf("unknown auth_module %q", truncate(name, 64))
	}
	if err := m.Allows(target); err != nil {
		return nil, http.StatusForbidden, fmt.Errorf("target not allowed for auth_module %q: %w", name, err)
	}
	return m, 0, nil
}

// Metrics serves /metrics: the exporter's own metrics plus, unless disabled,
// the queues of the configured broker.
func (h *Handler) Metrics(w http.ResponseWriter, r *http.Request) {
	setVary(w.Header())
	gatherers := prometheus.Gatherers{h.Exporter}
	if !h.MetricsQueues {
		h.setWriteDeadline(w)
		h.writeMetrics(w, r, h.Logger, gatherers, nil)
		return
	}
	timeout, err := h.timeout(r)
	if err != nil {
		h.refuse(w, r, refusal{endpoint: "/metrics", status: http.StatusBadRequest, reason: reasonBadTimeout, detail: err.Error()}, err.Error())
		return
	}
	gen := h.Config.Acquire()
	defer gen.Release()
	if gen.Env.Timeout > 0 && gen.Env.Timeout < timeout {
		timeout = gen.Env.Timeout
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	slot, ok := h.slots(false).acquire(ctx, source.Key(gen.Target, gen.Env))
	if !ok {
		msg := fmt.Sprintf("too many concurrent scrapes of /metrics (--web.max-requests=%d)", h.MaxRequests)
		h.refuse(w, r, refusal{endpoint: "/metrics", status: http.StatusServiceUnavailable, reason: reasonOverloaded, target: gen.Target.String(), detail: msg}, msg)
		return
	}
	defer h.releaseSlot(slot, h.Logger)
	registry := prometheus.NewRegistry()
	listStart := time.Now()
	queues, _ := probeQueues(ctx, h.Lister, gen.Target, gen.Env, registry, h.Logger.With("target", gen.Target.String()))
	slot.listed(time.Since(listStart))
	aw := slot.writeTo(w)
	h.setWriteDeadline(w)
	h.writeMetrics(aw, r, h.Logger, append(gatherers, registry), queues)
}

// slots returns the slots of /probe or /metrics (nil: no limit). Each
// endpoint has its own, so that a burst of probes never delays /metrics.
func (h *Handler) slots(probe bool) *slotPool {
	h.slotsOnce.Do(func() {
		if h.MaxRequests > 0 {
			h.probeSlots, h.metricsSlots = newSlotPool(h.MaxRequests), newSlotPool(h.MaxRequests)
		}
	})
	if probe {
		return h.probeSlots
	}
	return h.metricsSlots
}

func (h *Handler) releaseSlot(slot *slotTicket, logger *slog.Logger) {
	if slot.done() {
		logger.Debug("cut off a scraper that stopped reading its answer, to make room for another's", "waited_on_it_at_least", stalledWrite)
	}
}

func (h *Handler) setWriteDeadline(w http.ResponseWriter) {
	if h.WriteTimeout > 0 {
		// Not every ResponseWriter supports deadlines (test recorders); that is fine.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(h.WriteTimeout))
	}
}

// timeout honours Prometheus' timeout header minus the offset, like
// blackbox_exporter, so the answer arrives before Prometheus gives up; never
// more than MaxTimeout.
func (h *Handler) timeout(r *http.Request) (time.Duration, error) {
	timeout, err := scrapeTimeout(r.Header.Get(scrapeTimeoutHeader), h.TimeoutOffset, h.DefaultTimeout)
	if h.MaxTimeout > 0 && timeout > h.MaxTimeout {
		timeout = h.MaxTimeout
	}
	return timeout, err
}

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
