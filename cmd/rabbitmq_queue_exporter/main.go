// Command rabbitmq_queue_exporter exports per-queue message counts from the
// RabbitMQ management API, for one broker (/metrics) or many (/probe).
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	webflag "github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/management"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/prober"
)

const exporterName = "rabbitmq_queue_exporter"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// optionalString records whether a flag or its env var was given at all, so an
// explicit value and a *_FILE variant can be told apart from a default.
type optionalString struct{ value *string }

func (o *optionalString) Set(v string) error { o.value = &v; return nil }
func (o *optionalString) String() string {
	if o.value == nil {
		return ""
	}
	return *o.value
}

func run(args []string, stdout, stderr *os.File) int {
	app := kingpin.New(exporterName, "Prometheus exporter for RabbitMQ queue depths, read from the management HTTP API.\n\n"+
		"Single broker: scrape /metrics (queues of --rabbitmq.host). Many brokers: scrape /probe?target=<host|host:port|URL>.")
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	app.Version(version.Print(exporterName))
	app.HelpFlag.Short('h')

	var (
		host      = app.Flag("rabbitmq.host", "Broker management API: host, host:port or http(s)://host[:port][/path-prefix]. Default ports: 15672 (http), 15671 (https).").Default("localhost").Envar("RABBITMQ_HOST").String()
		user      optionalString
		password  optionalString
		userFile  = app.Flag("rabbitmq.user-file", "File holding the management API user name (instead of --rabbitmq.user).").Envar("RABBITMQ_USER_FILE").String()
		passFile  = app.Flag("rabbitmq.password-file", "File holding the management API password (instead of --rabbitmq.password).").Envar("RABBITMQ_PASSWORD_FILE").String()
		maxBody   = app.Flag("rabbitmq.max-response-bytes", "Largest queue listing accepted from a broker; a larger one fails the scrape.").Default("512MiB").Bytes()
		queuesIn  = app.Flag("metrics.queues", "Include the queues of --rabbitmq.host in /metrics. Disable for exporters used only through /probe.").Default("true").Bool()
		offset    = app.Flag("probe.timeout-offset", "Subtracted from Prometheus' X-Prometheus-Scrape-Timeout-Seconds to leave time to answer.").Default("0.5s").Duration()
		defTimout = app.Flag("probe.default-timeout", "Broker request timeout when the scraper sends no timeout header.").Default("10s").Duration()
		webConfig = webflag.AddFlags(app, ":9419")
	)
	app.Flag("rabbitmq.user", "Management API user name (default guest).").Envar("RABBITMQ_USER").SetValue(&user)
	app.Flag("rabbitmq.password", "Management API password (default guest).").Envar("RABBITMQ_PASSWORD").SetValue(&password)
	logConfig := &promslog.Config{}
	promslogflag.AddFlags(app, logConfig)

	if _, err := app.Parse(args); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", exporterName, err)
		return 2
	}
	logConfig.Writer = stderr
	logger := promslog.New(logConfig)

	target, err := config.ParseTarget(*host)
	if err != nil {
		fmt.Fprintf(stderr, "%s: invalid --rabbitmq.host / RABBITMQ_HOST: %v\n", exporterName, err)
		return 2
	}
	username, err := config.Setting{Name: "--rabbitmq.user / RABBITMQ_USER", Value: user.value, FileName: "--rabbitmq.user-file / RABBITMQ_USER_FILE", File: *userFile, Default: "guest"}.Resolve()
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", exporterName, err)
		return 2
	}
	pass, err := config.Setting{Name: "--rabbitmq.password / RABBITMQ_PASSWORD", Value: password.value, FileName: "--rabbitmq.password-file / RABBITMQ_PASSWORD_FILE", File: *passFile, Default: "guest"}.Resolve()
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", exporterName, err)
		return 2
	}
	if *defTimout <= 0 {
		fmt.Fprintf(stderr, "%s: --probe.default-timeout must be positive\n", exporterName)
		return 2
	}

	client := &management.Client{
		HTTP:         management.NewHTTPClient(nil),
		MaxBodyBytes: int64(*maxBody),
		UserAgent:    exporterName + "/" + version.Version,
	}
	exporterRegistry := prometheus.NewRegistry()
	exporterRegistry.MustRegister(
		versioncollector.NewCollector(exporterName),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	handler := &prober.Handler{
		Logger:         logger,
		Prober:         &prober.Prober{},
		DefaultTarget:  target,
		DefaultModule:  &prober.Module{Credentials: config.Credentials{Username: username, Password: config.Secret(pass)}, Client: client},
		TimeoutOffset:  *offset,
		DefaultTimeout: *defTimout,
		Exporter:       exporterRegistry,
		MetricsQueues:  *queuesIn,
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", handler.Metrics)
	mux.HandleFunc("/probe", handler.Probe)
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "Healthy")
	})
	landing, err := web.NewLandingPage(web.LandingConfig{
		Name:        "RabbitMQ Queue Exporter",
		Description: "Per-queue message counts from the RabbitMQ management API",
		Version:     version.Info(),
		Form: web.LandingForm{
			Action: "/probe",
			Inputs: []web.LandingFormInput{
				{Label: "Target", Type: "text", Name: "target", Placeholder: "host, host:port or https://host:15671", Value: target.String()},
			},
		},
		Links: []web.LandingLinks{
			{Address: "/metrics", Text: "Metrics", Description: "Exporter metrics and the queues of " + target.String()},
			{Address: "/probe?target=" + target.String(), Text: "Probe", Description: "Queues of one broker (?target=)"},
			{Address: "/-/healthy", Text: "Health", Description: "Liveness check"},
		},
	})
	if err != nil {
		logger.Error("building landing page", "err", err)
		return 1
	}
	mux.Handle("/", landing)

	server := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	logger.Info("starting "+exporterName, "version", version.Info(), "rabbitmq_host", target.String(), "rabbitmq_user", username)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	serveErr := make(chan error, 1)
	go func() { serveErr <- web.ListenAndServe(server, webConfig, logger) }()
	select {
	case err := <-serveErr:
		logger.Error("server stopped", "err", err)
		return 1
	case <-ctx.Done():
	}
	logger.Info("shutting down; finishing in-flight scrapes")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := server.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Error("shutdown", "err", err)
		return 1
	}
	return 0
}
