// Command rabbitmq_queue_exporter exports per-queue message counts of
// RabbitMQ brokers, for one broker (/metrics) or many (/probe).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	toolkitweb "github.com/prometheus/exporter-toolkit/web"
	webflag "github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source/builtin"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/web"
)

const exporterName = "rabbitmq_queue_exporter"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// settings are the parsed flags.
type settings struct {
	env            config.EnvFlags
	configFile     string
	maxBody        int64
	check          bool
	metricsQueues  bool
	timeoutOffset  time.Duration
	defaultTimeout time.Duration
	maxTimeout     time.Duration
	maxRequests    int
	writeTimeout   time.Duration
}

func run(args []string, stdout, stderr io.Writer) int {
	versionFromBuildInfo()
	app := kingpin.New(exporterName, "Prometheus exporter for RabbitMQ queue depths, read from the management HTTP API or the rabbitmq_prometheus plugin.\n\n"+
		"Single broker: scrape /metrics (queues of --rabbitmq.host). Many brokers: scrape /probe?target=<host|host:port|URL>[&auth_module=<name>].")
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	app.Version(version.Print(exporterName))
	app.HelpFlag.Short('h')

	var s settings
	e := &s.env
	app.Flag("rabbitmq.host", "Broker management API: host, host:port or http(s)://host[:port][/path-prefix]. Default ports: 15672 (http), 15671 (https).").Envar("RABBITMQ_HOST").Default("localhost").StringVar(&e.Host)
	app.Flag("rabbitmq.user", "Management API user name (default guest).").Envar("RABBITMQ_USER").PlaceHolder("NAME").SetValue(optionalString{&e.User})
	app.Flag("rabbitmq.password", "Management API password (default guest). Prefer --rabbitmq.password-file.").Envar("RABBITMQ_PASSWORD").PlaceHolder("PASSWORD").SetValue(optionalString{&e.Password})
	app.Flag("rabbitmq.user-file", "File holding the management API user name (instead of --rabbitmq.user).").Envar("RABBITMQ_USER_FILE").PlaceHolder("FILE").StringVar(&e.UserFile)
	app.Flag("rabbitmq.password-file", "File holding the management API password (instead of --rabbitmq.password); re-read on reload.").Envar("RABBITMQ_PASSWORD_FILE").PlaceHolder("FILE").StringVar(&e.PasswordFile)
	app.Flag("rabbitmq.source", "Where to read queue counts: management (the management API's queue listing), prometheus (every cluster member's rabbitmq_prometheus plugin) or auto (the plugin when every running member serves it, else the management API).").Envar("RABBITMQ_SOURCE").Default("management").PlaceHolder("SOURCE").StringVar(&e.Source)
	app.Flag("queue.fields", "Comma-separated per-queue fields to export: "+strings.Join(fieldNames(), ", ")+". Default: messages,messages_ready,messages_unacknowledged. Fields other than these three come from the management API's statistics (see the README for their cost and lag).").Envar("RABBITMQ_QUEUE_FIELDS").PlaceHolder("FIELDS").StringVar(&e.Fields)
	app.Flag("rabbitmq.plugin-endpoints", "Comma-separated plugin endpoints (http(s)://host:port) of the cluster members, when their node names do not resolve from the exporter; default: discovered through the management API.").Envar("RABBITMQ_PLUGIN_ENDPOINTS").PlaceHolder("URLS").StringVar(&e.PluginEndpoints)
	app.Flag("rabbitmq.tls.ca-file", "CA certificate (PEM) to verify https brokers with.").Envar("RABBITMQ_TLS_CA_FILE").PlaceHolder("FILE").StringVar(&e.TLS.CAFile)
	app.Flag("rabbitmq.tls.cert-file", "Client certificate (PEM) for https brokers.").Envar("RABBITMQ_TLS_CERT_FILE").PlaceHolder("FILE").StringVar(&e.TLS.CertFile)
	app.Flag("rabbitmq.tls.key-file", "Client key (PEM) for https brokers.").Envar("RABBITMQ_TLS_KEY_FILE").PlaceHolder("FILE").StringVar(&e.TLS.KeyFile)
	app.Flag("rabbitmq.tls.server-name", "Server name to verify https brokers' certificates against.").Envar("RABBITMQ_TLS_SERVER_NAME").PlaceHolder("NAME").StringVar(&e.TLS.ServerName)
	app.Flag("rabbitmq.tls.insecure-skip-verify", "Do not verify https brokers' certificates (testing only).").Envar("RABBITMQ_TLS_INSECURE_SKIP_VERIFY").SetValue(boolValue(&e.TLS.InsecureSkipVerify, config.EnvSetting("tls_config.insecure_skip_verify")))
	app.Flag("rabbitmq.tls.min-version", "Lowest TLS version to accept from https brokers: TLS10, TLS11, TLS12 or TLS13 (default TLS12).").Envar("RABBITMQ_TLS_MIN_VERSION").PlaceHolder("VERSION").SetValue(&parsedValue[config.TLSVersion]{dst: &e.TLS.MinVersion, name: config.EnvSetting("tls_config.min_version"), parse: config.ParseTLSVersion})
	app.Flag("rabbitmq.proxy-url", "HTTP proxy for requests to brokers (http://[user:password@]host:port).").Envar("RABBITMQ_PROXY_URL").PlaceHolder("URL").StringVar(&e.ProxyURL)
	app.Flag("rabbitmq.no-proxy", "Comma-separated hosts, domains and networks to reach without --rabbitmq.proxy-url.").Envar("RABBITMQ_NO_PROXY").PlaceHolder("HOSTS").StringVar(&e.NoProxy)
	app.Flag("rabbitmq.proxy-from-environment", "Use the proxy that HTTP_PROXY, HTTPS_PROXY and NO_PROXY name.").Envar("RABBITMQ_PROXY_FROM_ENVIRONMENT").SetValue(boolValue(&e.ProxyFromEnvironment, config.EnvSetting("proxy_from_environment")))
	app.Flag("rabbitmq.include-vhosts", "Only export queues in vhosts matching this regular expression (whole name).").Envar("RABBITMQ_INCLUDE_VHOSTS").PlaceHolder("REGEX").StringVar(&e.IncludeVhosts)
	app.Flag("rabbitmq.exclude-vhosts", "Do not export queues in vhosts matching this regular expression.").Envar("RABBITMQ_EXCLUDE_VHOSTS").PlaceHolder("REGEX").StringVar(&e.ExcludeVhosts)
	app.Flag("rabbitmq.include-queues", "Only export queues whose name matches this regular expression (whole name).").Envar("RABBITMQ_INCLUDE_QUEUES").PlaceHolder("REGEX").StringVar(&e.IncludeQueues)
	app.Flag("rabbitmq.exclude-queues", "Do not export queues whose name matches this regular expression.").Envar("RABBITMQ_EXCLUDE_QUEUES").PlaceHolder("REGEX").StringVar(&e.ExcludeQueues)
	app.Flag("rabbitmq.max-response-bytes", "Largest answer accepted from a broker (and the most memory one listing may take); a larger one fails the scrape. Bytes, or with a unit: 64MiB, 1GiB.").Envar("RABBITMQ_MAX_RESPONSE_BYTES").Default("512MiB").PlaceHolder("SIZE").SetValue(byteSizeValue(&s.maxBody, config.EnvSetting("max_response_bytes")))
	app.Flag("probe.allowed-targets", "Regular expression of host:port (default port filled in), or scheme://host:port, that /probe may send the RABBITMQ_USER credentials to, besides --rabbitmq.host. Empty: only --rabbitmq.host. '.*': any target.").Envar("RABBITMQ_PROBE_ALLOWED_TARGETS").PlaceHolder("REGEX").StringVar(&e.AllowedTargets)
	app.Flag("config.file", "YAML file with auth_modules (per-broker credentials, TLS, proxies, allowed targets, source, filters). Reloaded on SIGHUP and POST /-/reload.").PlaceHolder("FILE").Envar("RABBITMQ_EXPORTER_CONFIG_FILE").StringVar(&s.configFile)
	app.Flag("config.check", "Validate the configuration (flags, env, --config.file and the files they name) and exit.").BoolVar(&s.check)
	app.Flag("metrics.queues", "Include the queues of --rabbitmq.host in /metrics. Disable (--no-metrics.queues) for exporters used only through /probe.").Default("true").Envar("RABBITMQ_METRICS_QUEUES").SetValue(boolValue(&s.metricsQueues, "--[no-]metrics.queues / RABBITMQ_METRICS_QUEUES"))
	app.Flag("probe.timeout-offset", "Subtracted from Prometheus' X-Prometheus-Scrape-Timeout-Seconds to leave time to answer.").Default("0.5s").SetValue(durationValue(&s.timeoutOffset, "--probe.timeout-offset", 0))
	app.Flag("probe.default-timeout", "Broker request timeout when the scraper sends no timeout header.").Default("10s").SetValue(durationValue(&s.defaultTimeout, "--probe.default-timeout", time.Millisecond))
	app.Flag("probe.max-timeout", "Longest broker request timeout, whatever the scraper's timeout header asks for.").Default("2m").SetValue(durationValue(&s.maxTimeout, "--probe.max-timeout", time.Millisecond))
	// Each scrape in flight holds its listing (about 11 MB at 100k queues, twice
	// that in RSS with the GC's headroom): 8 keeps 50 concurrent 100k-queue
	// probes near 185 MiB where 16 reached 260-350 MiB, at the same throughput
	// on 2 cores (resources_test.go).
	app.Flag("web.max-requests", "Most listings read and written at once, per endpoint (/probe, /metrics); probes of one target and module share one; a scraper that stops reading gives its slot back; brokers whose last listing took 1s or more never hold the last max(2, n/4). More wait for a slot until their timeout, then get 503. 0: no limit.").Default("8").SetValue(intValue(&s.maxRequests, "--web.max-requests", 0))
	app.Flag("web.write-timeout", "Longest time to write one answer; a scraper that reads slower is cut off, freeing the answer's memory.").Default("1m").SetValue(durationValue(&s.writeTimeout, "--web.write-timeout", time.Millisecond))
	webConfig := webflag.AddFlags(app, ":9419")
	logConfig := &promslog.Config{}
	promslogflag.AddFlags(app, logConfig)

	if _, err := app.Parse(args); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", exporterName, err)
		return 2
	}
	logConfig.Writer = stderr
	logger := promslog.New(logConfig)

	opts := config.BuildOptions{MaxBodyBytes: s.maxBody, UserAgent: exporterName + "/" + version.Version}
	load := func() (*config.Generation, error) { return config.Load(&s.env, s.configFile, opts) }
	if s.check {
		g, err := load()
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", exporterName, err)
			return 2
		}
		fmt.Fprintf(stdout, "configuration is valid: target %s, source %s, %d auth module(s)\n", g.Target, g.Env.Source, len(g.ByName))
		return 0
	}

	exporterRegistry := prometheus.NewRegistry()
	exporterRegistry.MustRegister(
		versioncollector.NewCollector(exporterName),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	safeConfig, err := config.NewSafeConfig(load, exporterRegistry, logger)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", exporterName, err)
		return 2
	}
	gen := safeConfig.Current()
	handler := &web.Handler{
		Logger:         logger,
		Lister:         &source.Lister{Sources: builtin.Sources(), MaxTimeout: s.maxTimeout},
		Config:         safeConfig,
		TimeoutOffset:  s.timeoutOffset,
		DefaultTimeout: s.defaultTimeout,
		MaxTimeout:     s.maxTimeout,
		Exporter:       exporterRegistry,
		MetricsQueues:  s.metricsQueues,
		MaxRequests:    s.maxRequests,
		WriteTimeout:   s.writeTimeout,
		Refused:        web.NewRefusedCounter(exporterRegistry),
	}

	mux, err := newMux(handler, safeConfig, gen.Target)
	if err != nil {
		logger.Error("building landing page", "err", err)
		return 1
	}
	server := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		// Keep-alive connections of scrapers that went quiet.
		IdleTimeout: 2 * time.Minute,
	}
	logger.Info("starting "+exporterName, "version", version.Info(), "rabbitmq_host", gen.Target.String(),
		"rabbitmq_user", gen.Env.Credentials.Username, "rabbitmq_source", gen.Env.Source, "queue_fields", gen.Env.QueueFields().Names(), "auth_modules", len(gen.ByName))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				_ = safeConfig.Reload("SIGHUP")
			case <-ctx.Done():
				return
			}
		}
	}()

	serveErr := make(chan error, 1)
	go func() { serveErr <- toolkitweb.ListenAndServe(server, webConfig, logger) }()
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

// versionFromBuildInfo fills in the version of a binary built without the
// build script's -ldflags (go install …@v0.2.0) from the module version Go
// records; the revision already comes from the VCS stamp.
func versionFromBuildInfo() {
	if version.Version == "" {
		bi, _ := debug.ReadBuildInfo()
		version.Version = moduleVersion(bi)
	}
}

// moduleVersion is the main module's version as `go install` records it;
// "unknown" for a build from a work tree, which Go stamps "(devel)".
func moduleVersion(bi *debug.BuildInfo) string {
	if bi == nil || bi.Main.Version == "" || bi.Main.Version == "(devel)" {
		return "unknown"
	}
	return bi.Main.Version
}

// fieldNames lists every field --queue.fields accepts.
func fieldNames() []string {
	var names []string
	for _, f := range queue.Table() {
		names = append(names, f.Name)
	}
	return names
}
