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
	// Flags of the env credentials take their names from config, which names
	// them in its errors.
	flag := func(field, help string) *kingpin.FlagClause {
		flagName, envName := config.EnvNames(field)
		return app.Flag(flagName, help).Envar(envName)
	}
	flag("host", "Broker management API: host, host:port or http(s)://host[:port][/path-prefix]. Default ports: 15672 (http), 15671 (https).").Default("localhost").StringVar(&e.Host)
	flag("username", "Management API user name (default guest).").PlaceHolder("NAME").SetValue(optionalString{&e.User})
	flag("password", "Management API password (default guest). Prefer --rabbitmq.password-file.").PlaceHolder("PASSWORD").SetValue(optionalString{&e.Password})
	flag("username_file", "File holding the management API user name (instead of --rabbitmq.user).").PlaceHolder("FILE").StringVar(&e.UserFile)
	flag("password_file", "File holding the management API password (instead of --rabbitmq.password); re-read on reload.").PlaceHolder("FILE").StringVar(&e.PasswordFile)
	flag("source", "Where to read queue counts: management (the management API's queue listing), prometheus (every cluster member's rabbitmq_prometheus plugin) or auto (the plugin when every running member serves it, else the management API).").Default("management").PlaceHolder("SOURCE").StringVar(&e.Source)
	flag("plugin_endpoints", "Comma-separated plugin endpoints (http(s)://host:port) of the cluster members, when their node names do not resolve from the exporter; default: discovered through the management API.").PlaceHolder("URLS").StringVar(&e.PluginEndpoints)
	flag("tls_config.ca_file", "CA certificate (PEM) to verify https brokers with.").PlaceHolder("FILE").StringVar(&e.TLS.CAFile)
	flag("tls_config.cert_file", "Client certificate (PEM) for https brokers.").PlaceHolder("FILE").StringVar(&e.TLS.CertFile)
	flag("tls_config.key_file", "Client key (PEM) for https brokers.").PlaceHolder("FILE").StringVar(&e.TLS.KeyFile)
	flag("tls_config.server_name", "Server name to verify https brokers' certificates against.").PlaceHolder("NAME").StringVar(&e.TLS.ServerName)
	flag("tls_config.insecure_skip_verify", "Do not verify https brokers' certificates (testing only).").SetValue(boolValue(&e.TLS.InsecureSkipVerify, config.EnvSetting("tls_config.insecure_skip_verify")))
	flag("tls_config.min_version", "Lowest TLS version to accept from https brokers: TLS10, TLS11, TLS12 or TLS13 (default TLS12).").PlaceHolder("VERSION").SetValue(&parsedValue[config.TLSVersion]{dst: &e.TLS.MinVersion, name: config.EnvSetting("tls_config.min_version"), parse: config.ParseTLSVersion})
	flag("proxy_url", "HTTP proxy for requests to brokers (http://[user:password@]host:port).").PlaceHolder("URL").StringVar(&e.ProxyURL)
	flag("no_proxy", "Comma-separated hosts, domains and networks to reach without --rabbitmq.proxy-url.").PlaceHolder("HOSTS").StringVar(&e.NoProxy)
	flag("proxy_from_environment", "Use the proxy that HTTP_PROXY, HTTPS_PROXY and NO_PROXY name.").SetValue(boolValue(&e.ProxyFromEnvironment, config.EnvSetting("proxy_from_environment")))
	flag("include_vhosts", "Only export queues in vhosts matching this regular expression (whole name).").PlaceHolder("REGEX").StringVar(&e.IncludeVhosts)
	flag("exclude_vhosts", "Do not export queues in vhosts matching this regular expression.").PlaceHolder("REGEX").StringVar(&e.ExcludeVhosts)
	flag("include_queues", "Only export queues whose name matches this regular expression (whole name).").PlaceHolder("REGEX").StringVar(&e.IncludeQueues)
	flag("exclude_queues", "Do not export queues whose name matches this regular expression.").PlaceHolder("REGEX").StringVar(&e.ExcludeQueues)
	flag("max_response_bytes", "Largest answer accepted from a broker (and the most memory one listing may take); a larger one fails the scrape. Bytes, or with a unit: 64MiB, 1GiB.").Default("512MiB").PlaceHolder("SIZE").SetValue(byteSizeValue(&s.maxBody, config.EnvSetting("max_response_bytes")))
	flag("targets", "Regular expression of host:port (default port filled in), or scheme://host:port, that /probe may send the RABBITMQ_USER credentials to, besides --rabbitmq.host. Empty: only --rabbitmq.host. '.*': any target.").PlaceHolder("REGEX").StringVar(&e.AllowedTargets)
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
	app.Flag("web.max-requests", "Most scrapes served at once, per endpoint (/probe, /metrics); more wait for a slot until their timeout, then get 503. 0: no limit.").Default("8").SetValue(intValue(&s.maxRequests, "--web.max-requests", 0))
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
		"rabbitmq_user", gen.Env.Credentials.Username, "rabbitmq_source", gen.Env.Source, "auth_modules", len(gen.ByName))

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
