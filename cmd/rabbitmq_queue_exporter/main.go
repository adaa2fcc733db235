// Command rabbitmq_queue_exporter exports per-queue message counts from the
// RabbitMQ management API, for one broker (/metrics) or many (/probe).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"regexp"
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

// settings are the parsed flags; modules are rebuilt from them on every reload
// so secret files and the config file are read again.
type settings struct {
	host                   string
	user, password         optionalString
	userFile, passwordFile string
	allowedTargets         string
	includeVhosts          string
	excludeVhosts          string
	includeQueues          string
	excludeQueues          string
	tls                    config.TLSConfig
	configFile             string
	maxBody                int64
}

func run(args []string, stdout, stderr io.Writer) int {
	app := kingpin.New(exporterName, "Prometheus exporter for RabbitMQ queue depths, read from the management HTTP API.\n\n"+
		"Single broker: scrape /metrics (queues of --rabbitmq.host). Many brokers: scrape /probe?target=<host|host:port|URL>[&auth_module=<name>].")
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	app.Version(version.Print(exporterName))
	app.HelpFlag.Short('h')

	var s settings
	app.Flag("rabbitmq.host", "Broker management API: host, host:port or http(s)://host[:port][/path-prefix]. Default ports: 15672 (http), 15671 (https).").Default("localhost").Envar("RABBITMQ_HOST").StringVar(&s.host)
	app.Flag("rabbitmq.user", "Management API user name (default guest).").PlaceHolder("NAME").Envar("RABBITMQ_USER").SetValue(&s.user)
	app.Flag("rabbitmq.password", "Management API password (default guest). Prefer --rabbitmq.password-file.").PlaceHolder("PASSWORD").Envar("RABBITMQ_PASSWORD").SetValue(&s.password)
	app.Flag("rabbitmq.user-file", "File holding the management API user name (instead of --rabbitmq.user).").PlaceHolder("FILE").Envar("RABBITMQ_USER_FILE").StringVar(&s.userFile)
	app.Flag("rabbitmq.password-file", "File holding the management API password (instead of --rabbitmq.password); re-read on reload.").PlaceHolder("FILE").Envar("RABBITMQ_PASSWORD_FILE").StringVar(&s.passwordFile)
	app.Flag("rabbitmq.tls.ca-file", "CA certificate (PEM) to verify https brokers with.").PlaceHolder("FILE").Envar("RABBITMQ_TLS_CA_FILE").StringVar(&s.tls.CAFile)
	app.Flag("rabbitmq.tls.cert-file", "Client certificate (PEM) for https brokers.").PlaceHolder("FILE").Envar("RABBITMQ_TLS_CERT_FILE").StringVar(&s.tls.CertFile)
	app.Flag("rabbitmq.tls.key-file", "Client key (PEM) for https brokers.").PlaceHolder("FILE").Envar("RABBITMQ_TLS_KEY_FILE").StringVar(&s.tls.KeyFile)
	app.Flag("rabbitmq.tls.server-name", "Server name to verify https brokers' certificates against.").PlaceHolder("NAME").Envar("RABBITMQ_TLS_SERVER_NAME").StringVar(&s.tls.ServerName)
	app.Flag("rabbitmq.tls.insecure-skip-verify", "Do not verify https brokers' certificates (testing only).").Envar("RABBITMQ_TLS_INSECURE_SKIP_VERIFY").BoolVar(&s.tls.InsecureSkipVerify)
	app.Flag("rabbitmq.include-vhosts", "Only export queues in vhosts matching this regular expression (whole name).").PlaceHolder("REGEX").Envar("RABBITMQ_INCLUDE_VHOSTS").StringVar(&s.includeVhosts)
	app.Flag("rabbitmq.exclude-vhosts", "Do not export queues in vhosts matching this regular expression.").PlaceHolder("REGEX").Envar("RABBITMQ_EXCLUDE_VHOSTS").StringVar(&s.excludeVhosts)
	app.Flag("rabbitmq.include-queues", "Only export queues whose name matches this regular expression (whole name).").PlaceHolder("REGEX").Envar("RABBITMQ_INCLUDE_QUEUES").StringVar(&s.includeQueues)
	app.Flag("rabbitmq.exclude-queues", "Do not export queues whose name matches this regular expression.").PlaceHolder("REGEX").Envar("RABBITMQ_EXCLUDE_QUEUES").StringVar(&s.excludeQueues)
	maxBody := app.Flag("rabbitmq.max-response-bytes", "Largest queue listing accepted from a broker; a larger one fails the scrape.").Default("512MiB").Envar("RABBITMQ_MAX_RESPONSE_BYTES").Bytes()
	app.Flag("probe.allowed-targets", "Regular expression of host:port (default port filled in) that /probe may send the RABBITMQ_USER credentials to, besides --rabbitmq.host. Empty: only --rabbitmq.host. '.*': any target.").PlaceHolder("REGEX").Envar("RABBITMQ_PROBE_ALLOWED_TARGETS").StringVar(&s.allowedTargets)
	app.Flag("config.file", "YAML file with auth_modules (per-broker credentials, TLS, allowed targets, filters). Reloaded on SIGHUP and POST /-/reload.").PlaceHolder("FILE").Envar("RABBITMQ_EXPORTER_CONFIG_FILE").StringVar(&s.configFile)
	check := app.Flag("config.check", "Validate the configuration (flags, env, --config.file and the files they name) and exit.").Bool()
	queuesIn := app.Flag("metrics.queues", "Include the queues of --rabbitmq.host in /metrics. Disable (--no-metrics.queues) for exporters used only through /probe.").Default("true").Envar("RABBITMQ_METRICS_QUEUES").Bool()
	offset := app.Flag("probe.timeout-offset", "Subtracted from Prometheus' X-Prometheus-Scrape-Timeout-Seconds to leave time to answer.").Default("0.5s").Duration()
	defaultTimeout := app.Flag("probe.default-timeout", "Broker request timeout when the scraper sends no timeout header.").Default("10s").Duration()
	webConfig := webflag.AddFlags(app, ":9419")
	logConfig := &promslog.Config{}
	promslogflag.AddFlags(app, logConfig)

	if _, err := app.Parse(args); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", exporterName, err)
		return 2
	}
	s.maxBody = int64(*maxBody)
	logConfig.Writer = stderr
	logger := promslog.New(logConfig)

	fail := func(err error) int {
		fmt.Fprintf(stderr, "%s: %v\n", exporterName, err)
		return 2
	}
	target, err := config.ParseTarget(s.host)
	if err != nil {
		return fail(fmt.Errorf("invalid --rabbitmq.host / RABBITMQ_HOST: %v", err))
	}
	if *defaultTimeout <= 0 {
		return fail(errors.New("--probe.default-timeout must be positive"))
	}
	if *offset < 0 {
		return fail(errors.New("--probe.timeout-offset must not be negative"))
	}
	userAgent := exporterName + "/" + version.Version
	modules, err := loadModules(&s, target, userAgent)
	if err != nil {
		return fail(err)
	}
	if *check {
		fmt.Fprintf(stdout, "configuration is valid: target %s, %d auth module(s)\n", target, len(modules.ByName))
		return 0
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
		TimeoutOffset:  *offset,
		DefaultTimeout: *defaultTimeout,
		Exporter:       exporterRegistry,
		MetricsQueues:  *queuesIn,
		ConfigFile:     s.configFile,
	}
	handler.SetModules(modules)
	reloader := newReloader(logger, exporterRegistry, func() error {
		m, err := loadModules(&s, target, userAgent)
		if err != nil {
			return err
		}
		handler.SetModules(m)
		return nil
	})

	mux, err := newMux(handler, reloader, target)
	if err != nil {
		logger.Error("building landing page", "err", err)
		return 1
	}
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	logger.Info("starting "+exporterName, "version", version.Info(), "rabbitmq_host", target.String(), "rabbitmq_user", modules.Env.Credentials.Username, "auth_modules", len(modules.ByName))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				_ = reloader.reload("SIGHUP")
			case <-ctx.Done():
				return
			}
		}
	}()

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

// loadModules builds one configuration generation: the env/flag module and the
// auth modules of --config.file, reading every secret file again.
func loadModules(s *settings, target config.Target, userAgent string) (*prober.Modules, error) {
	username, err := config.Setting{Name: "--rabbitmq.user / RABBITMQ_USER", Value: s.user.value, FileName: "--rabbitmq.user-file / RABBITMQ_USER_FILE", File: s.userFile, Default: "guest"}.Resolve()
	if err != nil {
		return nil, err
	}
	password, err := config.Setting{Name: "--rabbitmq.password / RABBITMQ_PASSWORD", Value: s.password.value, FileName: "--rabbitmq.password-file / RABBITMQ_PASSWORD_FILE", File: s.passwordFile, Default: "guest"}.Resolve()
	if err != nil {
		return nil, err
	}
	env := &config.Module{Credentials: config.Credentials{Username: username, Password: config.Secret(password)}}
	// The configured host itself is always allowed; its pattern is quoted so
	// that dots in the name are literal.
	own, err := config.CompileAnchored("--rabbitmq.host", regexp.QuoteMeta(target.HostPort()))
	if err != nil {
		return nil, err
	}
	env.Targets = append(env.Targets, own)
	if s.allowedTargets != "" {
		re, err := config.CompileAnchored("--probe.allowed-targets / RABBITMQ_PROBE_ALLOWED_TARGETS", s.allowedTargets)
		if err != nil {
			return nil, err
		}
		env.Targets = append(env.Targets, re)
	}
	if env.Filter, err = config.NewFilter("--rabbitmq.", s.includeVhosts, s.excludeVhosts, s.includeQueues, s.excludeQueues); err != nil {
		return nil, err
	}
	if env.TLS, err = s.tls.Build("--rabbitmq.tls."); err != nil {
		return nil, err
	}
	shownTargets := []string{regexp.QuoteMeta(target.HostPort())}
	if s.allowedTargets != "" {
		shownTargets = append(shownTargets, s.allowedTargets)
	}
	env.Config = config.ModuleConfig{TLSConfig: s.tls, Targets: shownTargets,
		IncludeVhosts: s.includeVhosts, ExcludeVhosts: s.excludeVhosts, IncludeQueues: s.includeQueues, ExcludeQueues: s.excludeQueues}

	mods := &prober.Modules{Env: prober.NewModule(env, s.maxBody, userAgent), ByName: map[string]*prober.Module{}}
	if s.configFile != "" {
		file, err := config.LoadFile(s.configFile)
		if err != nil {
			return nil, err
		}
		for name, m := range file {
			mods.ByName[name] = prober.NewModule(m, s.maxBody, userAgent)
		}
	}
	return mods, nil
}
