package main

import (
	"fmt"
	"net/http"
	"net/url"

	"github.com/prometheus/common/version"
	toolkitweb "github.com/prometheus/exporter-toolkit/web"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/brokerhttp"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/web"
)

func newMux(handler *web.Handler, reload http.Handler, target brokerhttp.Target) (*http.ServeMux, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", handler.Metrics)
	mux.HandleFunc("/probe", handler.Probe)
	mux.Handle("/-/reload", reload)
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "Healthy")
	})
	landing, err := toolkitweb.NewLandingPage(toolkitweb.LandingConfig{
		Name:        "RabbitMQ Queue Exporter",
		Description: "Per-queue message counts (messages, ready, unacknowledged) from the RabbitMQ management API",
		Version:     version.Info(),
		Profiling:   "false", // no pprof handlers are served
		Form: toolkitweb.LandingForm{
			Action: "/probe",
			Inputs: []toolkitweb.LandingFormInput{
				{Label: "Target", Type: "text", Name: "target", Placeholder: "host, host:port or https://host:15671", Value: target.String()},
				{Label: "Auth module", Type: "text", Name: "auth_module", Placeholder: "empty: RABBITMQ_USER credentials"},
				{Label: "Debug", Type: "checkbox", Name: "debug", Value: "true"},
			},
		},
		Links: []toolkitweb.LandingLinks{
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
