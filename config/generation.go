package config

import (
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/brokerhttp"
)

// Generation is one complete configuration: the env credentials and the auth
// modules of the config file, built together and replaced together.
type Generation struct {
	Target brokerhttp.Target // RABBITMQ_HOST
	Env    *Module           // credentials from flags/env, used when no auth_module is given
	ByName map[string]*Module

	mu      sync.Mutex
	users   int
	retired bool
}

// Load builds a generation from the flags and the config file, reading every
// secret and TLS file again.
func Load(flags *EnvFlags, configFile string, opts BuildOptions) (*Generation, error) {
	host, err := brokerhttp.ParseTarget(flags.Host)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvSetting("host"), err)
	}
	envConfig, err := flags.moduleConfig(host)
	if err != nil {
		return nil, err
	}
	env, err := buildModule("", envConfig, EnvSetting, opts)
	if err != nil {
		return nil, err
	}
	g := &Generation{Target: host, Env: env, ByName: map[string]*Module{}}
	if configFile != "" {
		if g.ByName, err = loadFile(configFile, opts); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// Acquire marks the generation in use by a probe; Release ends that.
func (g *Generation) Acquire() {
	g.mu.Lock()
	g.users++
	g.mu.Unlock()
}

// Release ends a probe's use; the last one of a retired generation closes
// the connections the probes left idle.
func (g *Generation) Release() {
	g.mu.Lock()
	g.users--
	last := g.retired && g.users == 0
	g.mu.Unlock()
	if last {
		g.closeIdle()
	}
}

// retire is called when a newer generation replaced g: its HTTP clients will
// not be used again once the probes still running finish, so their idle
// connections (and the goroutines and file descriptors each holds) go now,
// and again when the last probe leaves.
func (g *Generation) retire() {
	g.mu.Lock()
	g.retired = true
	g.mu.Unlock()
	g.closeIdle()
}

func (g *Generation) closeIdle() {
	for _, m := range g.modules() {
		m.HTTP.CloseIdleConnections()
	}
}

func (g *Generation) modules() []*Module {
	out := []*Module{g.Env}
	for _, m := range g.ByName {
		out = append(out, m)
	}
	return out
}

// SafeConfig holds the configuration in use and replaces it on reload, keeping
// the old one when the new one is invalid, and reports the outcome as metrics
// as Prometheus does for its own configuration.
type SafeConfig struct {
	load      func() (*Generation, error)
	logger    *slog.Logger
	mu        sync.Mutex // one reload at a time
	current   atomic.Pointer[Generation]
	success   prometheus.Gauge
	timestamp prometheus.Gauge
}

// NewSafeConfig loads the first generation; an error there stops start-up.
func NewSafeConfig(load func() (*Generation, error), reg prometheus.Registerer, logger *slog.Logger) (*SafeConfig, error) {
	g, err := load()
	if err != nil {
		return nil, err
	}
	c := &SafeConfig{
		load:   load,
		logger: logger,
		success: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rabbitmq_queue_exporter_config_last_reload_successful",
			Help: "1 if the last configuration load (start-up or reload) succeeded, 0 if the previous configuration is still in use.",
		}),
		timestamp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rabbitmq_queue_exporter_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful configuration load.",
		}),
	}
	reg.MustRegister(c.success, c.timestamp)
	c.current.Store(g)
	c.success.Set(1)
	c.timestamp.SetToCurrentTime()
	return c, nil
}

// Acquire returns the generation in use, marked in use until Release.
func (c *SafeConfig) Acquire() *Generation {
	for {
		g := c.current.Load()
		g.Acquire()
		// A reload may have retired g between Load and Acquire; its clients
		// would then never be cleaned up after this probe, so take the new one.
		if c.current.Load() == g {
			return g
		}
		g.Release()
	}
}

// Current returns the generation in use without marking it, for reading settings.
func (c *SafeConfig) Current() *Generation { return c.current.Load() }

// Reload re-reads the configuration; trigger names what asked (SIGHUP, HTTP).
func (c *SafeConfig) Reload(trigger string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	g, err := c.load()
	if err != nil {
		c.success.Set(0)
		c.logger.Error("configuration reload failed; keeping the previous configuration", "trigger", trigger, "err", err)
		return err
	}
	old := c.current.Swap(g)
	old.retire()
	c.success.Set(1)
	c.timestamp.SetToCurrentTime()
	c.logger.Info("configuration reloaded", "trigger", trigger, "auth_modules", len(g.ByName))
	return nil
}

// ServeHTTP is POST /-/reload.
func (c *SafeConfig) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		w.Header().Set("Allow", "POST, PUT")
		http.Error(w, "reload requires POST", http.StatusMethodNotAllowed)
		return
	}
	if err := c.Reload("HTTP"); err != nil {
		http.Error(w, "reload failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprintln(w, "configuration reloaded")
}
