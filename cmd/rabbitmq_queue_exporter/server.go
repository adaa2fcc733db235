package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/prober"
)

// reloader re-reads the configuration, keeping the old one when the new one
// is invalid, and records the outcome as metrics like Prometheus does.
type reloader struct {
	mu        sync.Mutex
	logger    *slog.Logger
	load      func() error
	success   prometheus.Gauge
	timestamp prometheus.Gauge
}

func newReloader(logger *slog.Logger, reg prometheus.Registerer, load func() error) *reloader {
	r := &reloader{
		logger: logger,
		load:   load,
		success: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rabbitmq_exporter_config_last_reload_successful",
			Help: "1 if the last configuration load (start-up or reload) succeeded, 0 if the previous configuration is still in use.",
		}),
		timestamp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rabbitmq_exporter_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful configuration load.",
		}),
	}
	reg.MustRegister(r.success, r.timestamp)
	r.success.Set(1)
	r.timestamp.SetToCurrentTime()
	return r
}

func (r *reloader) reload(trigger string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.load(); err != nil {
		r.success.Set(0)
		r.logger.Error("configuration reload failed; keeping the previous configuration", "trigger", trigger, "err", err)
		return err
	}
	r.success.Set(1)
	r.timestamp.SetToCurrentTime()
	r.logger.Info("configuration reloaded", "trigger", trigger)
	return nil
}

// ServeHTTP is POST /-/reload.
func (r *reloader) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost && req.Method != http.MethodPut {
		w.Header().Set("Allow", "POST, PUT")
		http.Error(w, "reload requires POST", http.StatusMethodNotAllowed)
		return
	}
	if err := r.reload("HTTP"); err != nil {
		http.Error(w, "reload failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprintln(w, "configuration reloaded")
}

func newMux(handler *prober.Handler, reload *reloader, target config.Target) (*http.ServeMux, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", handler.Metrics)
	mux.HandleFunc("/probe", handler.Probe)
	mux.Handle("/-/reload", reload)
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "Healthy")
	})
	landing, err := web.NewLandingPage(web.LandingConfig{
		Name:        "RabbitMQ Queue Exporter",
		Description: "Per-queue message counts (messages, ready, unacknowledged) from the RabbitMQ management API",
		Version:     version.Info(),
		Profiling:   "false", // no pprof handlers are served
		Form: web.LandingForm{
			Action: "/probe",
			Inputs: []web.LandingFormInput{
				{Label: "Target", Type: "text", Name: "target", Placeholder: "host, host:port or https://host:15671", Value: target.String()},
				{Label: "Auth module", Type: "text", Name: "auth_module", Placeholder: "empty: RABBITMQ_USER credentials"},
				{Label: "Debug", Type: "checkbox", Name: "debug", Value: "true"},
			},
		},
		Links: []web.LandingLinks{
			{Address: "/metrics", Text: "Metrics", Description: "Exporter metrics and the queues of " + target.String()},
			{Address: "/probe?target=" + url.QueryEscape(target.String()), Text: "Probe", Description: "Queues of one broker (?target=&auth_module=)"},
			{Address: "/-/healthy", Text: "Health", Description: "Liveness check"},
		},
	})
	if err != nil {
		return nil, err
	}
	mux.Handle("/", landing)
	return mux, nil
}
