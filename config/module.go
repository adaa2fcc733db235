// Package config turns flags, environment and configuration files into the
// validated settings the exporter runs with: auth modules (credentials, the
// targets they may go to, source, filters, HTTP client), the secrets that
// must never be printed, and generations swapped whole on reload.
package config

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"regexp/syntax"
	"strings"
	"time"

	commoncfg "github.com/prometheus/common/config"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/brokerhttp"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
)

// ModuleConfig is one auth module as written in the config file; the flags and
// environment variables of the env credentials produce one too (EnvFlags), and
// both go through the same validation and build. Secrets are Secret types, so
// the effective configuration can be printed on debug pages safely.
type ModuleConfig struct {
	Username        string        `yaml:"username,omitempty"`
	UsernameFile    string        `yaml:"username_file,omitempty"`
	Password        Secret        `yaml:"password,omitempty"`
	PasswordFile    string        `yaml:"password_file,omitempty"`
	Targets         []string      `yaml:"targets"`
	Source          Source        `yaml:"source,omitempty"`
	Fields          []string      `yaml:"fields,omitempty"`
	PluginEndpoints []string      `yaml:"plugin_endpoints,omitempty"`
	Timeout         time.Duration `yaml:"timeout,omitempty"`
	IncludeVhosts   string        `yaml:"include_vhosts,omitempty"`
	ExcludeVhosts   string        `yaml:"exclude_vhosts,omitempty"`
	IncludeQueues   string        `yaml:"include_queues,omitempty"`
	ExcludeQueues   string        `yaml:"exclude_queues,omitempty"`
	// The HTTP client settings every Prometheus component knows, from
	// prometheus/common: TLS (files or inline PEM, min_version…) and proxies.
	TLSConfig             commoncfg.TLSConfig `yaml:"tls_config,omitempty"`
	commoncfg.ProxyConfig `yaml:",inline"`

	requireTLS bool // the env credentials with an https RABBITMQ_HOST
}

// Source says where a module reads the queue counts from.
type Source string

const (
	// SourceManagement lists queues through the management API (one request).
	SourceManagement Source = "management"
	// SourcePrometheus reads every cluster member's rabbitmq_prometheus plugin.
	SourcePrometheus Source = "prometheus"
	// SourceAuto uses the plugin where every running member serves it, else the management API.
	SourceAuto Source = "auto"
)

// ParseSource accepts the three source names; "" means management.
func ParseSource(s string) (Source, error) {
	switch Source(s) {
	case "", SourceManagement:
		return SourceManagement, nil
	case SourcePrometheus, SourceAuto:
		return Source(s), nil
	}
	return "", fmt.Errorf("unknown source %q (use management, prometheus or auto)", s)
}

// Module is a validated auth module, ready to probe with.
type Module struct {
	Name        string // "" for the env credentials
	Config      ModuleConfig
	Credentials Credentials
	Targets     []TargetPattern
	// TLSBound modules never send their credentials over plain http: the
	// operator configured TLS for them (tls_config, or an https RABBITMQ_HOST).
	TLSBound        bool
	Timeout         time.Duration // 0: only the scrape timeout applies
	Filter          Filter
	Source          Source
	Fields          queue.FieldSet      // per-queue gauges, numbered as QueueSet numbers them; nil: the default
	PluginEndpoints []brokerhttp.Target // explicit plugin endpoints; empty: discover members
	MaxBodyBytes    int64
	HTTP            *http.Client
	setting         func(field string) string
}

// QueueFields are the module's per-queue fields (the default when none were chosen).
func (m *Module) QueueFields() queue.FieldSet {
	if m.Fields == nil {
		return queue.Fields()
	}
	return m.Fields
}

// Credentials authenticate the exporter to a management API.
type Credentials struct {
	Username string `yaml:"username"`
	Password Secret `yaml:"password"`
}

// Setting names a field of this module as the operator wrote it: a flag and
// its environment variable, or the config file path of the field.
func (m *Module) Setting(field string) string { return m.setting(field) }

// TargetPattern is one allow-list entry: a regular expression on the whole
// `host:port` (default port filled in) or, when written with a scheme, on the
// whole `scheme://host:port`.
type TargetPattern struct {
	re         *regexp.Regexp
	withScheme bool
}

// Allows returns nil when this module's credentials may be sent to t, or an
// error saying why not. Credentials of a TLS-bound module never go over plain
// http, whatever a scheme-less pattern says: the scheme is part of what the
// operator allowed.
func (m *Module) Allows(t brokerhttp.Target) error {
	hp := t.HostPort()
	downgrade := false
	for _, p := range m.Targets {
		if p.withScheme {
			if p.re.MatchString(t.Scheme + "://" + hp) {
				return nil
			}
			continue
		}
		if p.re.MatchString(hp) {
			if t.Scheme == "https" || !m.TLSBound {
				return nil
			}
			downgrade = true
		}
	}
	if downgrade {
		return fmt.Errorf("%s: these credentials are configured for TLS and are never sent over plain http; use https://%s", t, hp)
	}
	return fmt.Errorf("%s (%s) matches no pattern in %s", t, hp, m.Setting("targets"))
}

// AllowsEndpoint reports whether the exporter may contact t without
// credentials (a discovered or configured plugin endpoint): the allow-list
// still decides where it connects, so an answer from a broker cannot steer it
// elsewhere. The TLS rule protects credentials, and none are sent there.
func (m *Module) AllowsEndpoint(t brokerhttp.Target) error {
	hp := t.HostPort()
	for _, p := range m.Targets {
		if p.withScheme && p.re.MatchString(t.Scheme+"://"+hp) || !p.withScheme && p.re.MatchString(hp) {
			return nil
		}
	}
	return fmt.Errorf("%s (%s) matches no pattern in %s", t, hp, m.Setting("targets"))
}

// Filter selects queues by vhost and name; nil patterns select everything.
type Filter struct {
	IncludeVhosts, ExcludeVhosts, IncludeQueues, ExcludeQueues *regexp.Regexp
}

// Keep reports whether a queue is exported. Excludes win over includes.
func (f *Filter) Keep(vhost, name []byte) bool {
	if f.IncludeVhosts != nil && !f.IncludeVhosts.Match(vhost) {
		return false
	}
	if f.ExcludeVhosts != nil && f.ExcludeVhosts.Match(vhost) {
		return false
	}
	if f.IncludeQueues != nil && !f.IncludeQueues.Match(name) {
		return false
	}
	if f.ExcludeQueues != nil && f.ExcludeQueues.Match(name) {
		return false
	}
	return true
}

// Empty reports whether the filter keeps every queue.
func (f *Filter) Empty() bool {
	return f.IncludeVhosts == nil && f.ExcludeVhosts == nil && f.IncludeQueues == nil && f.ExcludeQueues == nil
}

// CompileAnchored compiles a pattern that must match a whole value, as
// Prometheus relabelling does, so `rabbit-a:15672` cannot match `evil-rabbit-a:15672x`.
func CompileAnchored(setting, pattern string) (*regexp.Regexp, error) {
	re, err := regexp.Compile("^(?:" + pattern + ")$")
	if err != nil {
		reason := err.Error()
		if se, ok := errors.AsType[*syntax.Error](err); ok {
			reason = se.Code.String() // without our anchoring wrapper
		}
		return nil, fmt.Errorf("%s: invalid regular expression %q: %s", setting, pattern, reason)
	}
	return re, nil
}

// DefaultMaxBodyBytes bounds one broker answer, and one listing's memory,
// where no limit is configured (about 2M queues in the lean form).
const DefaultMaxBodyBytes = 512 << 20

// BuildOptions are the process-wide settings every module shares.
type BuildOptions struct {
	MaxBodyBytes int64
	UserAgent    string
}

// buildModule validates c and builds the module, reading the secret and TLS
// files it names. setting names each field in errors.
func buildModule(name string, c ModuleConfig, setting func(string) string, opts BuildOptions) (*Module, error) {
	m := &Module{Name: name, Config: c, Timeout: c.Timeout, MaxBodyBytes: opts.MaxBodyBytes, setting: setting}
	var err error
	if m.Credentials.Username, err = resolve(setting, "username", c.Username, c.UsernameFile); err != nil {
		return nil, err
	}
	if m.Credentials.Username == "" {
		return nil, fmt.Errorf("%s is required", setting("username"))
	}
	pw, err := resolve(setting, "password", string(c.Password), c.PasswordFile)
	if err != nil {
		return nil, err
	}
	if pw == "" {
		return nil, fmt.Errorf("%s or %s is required", setting("password"), setting("password_file"))
	}
	m.Credentials.Password = Secret(pw)
	if len(c.Targets) == 0 {
		return nil, fmt.Errorf("%s is required: list the host:port patterns these credentials may be sent to", setting("targets"))
	}
	for i, p := range c.Targets {
		re, err := CompileAnchored(fmt.Sprintf("%s[%d]", setting("targets"), i), p)
		if err != nil {
			return nil, err
		}
		m.Targets = append(m.Targets, TargetPattern{re: re, withScheme: strings.Contains(p, "://")})
	}
	if m.Source, err = ParseSource(string(c.Source)); err != nil {
		return nil, fmt.Errorf("%s: %w", setting("source"), err)
	}
	if m.Fields, err = queue.Select(queue.Table(), c.Fields); err != nil {
		return nil, fmt.Errorf("%s: %w", setting("fields"), err)
	}
	for i, e := range c.PluginEndpoints {
		t, err := brokerhttp.ParseTarget(e)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", setting("plugin_endpoints"), i, err)
		}
		m.PluginEndpoints = append(m.PluginEndpoints, t)
	}
	if c.Timeout < 0 {
		return nil, fmt.Errorf("%s must not be negative", setting("timeout"))
	}
	if m.Filter, err = newFilter(setting, c); err != nil {
		return nil, err
	}
	if err := c.TLSConfig.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", setting("tls_config"), err)
	}
	for _, f := range []struct{ field, path string }{{"ca_file", c.TLSConfig.CAFile}, {"cert_file", c.TLSConfig.CertFile}, {"key_file", c.TLSConfig.KeyFile}} {
		if err := checkFile(setting("tls_config."+f.field), f.path); err != nil {
			return nil, err
		}
	}
	m.TLSBound = c.requireTLS || c.TLSConfig != (commoncfg.TLSConfig{})
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", setting("proxy_url"), err)
	}
	if m.HTTP, err = brokerhttp.NewClient(brokerhttp.ClientConfig{TLS: c.TLSConfig, Proxy: c.ProxyConfig, UserAgent: opts.UserAgent, ReadFile: ReadTLSFile}); err != nil {
		return nil, fmt.Errorf("%s: %w", setting("tls_config"), err)
	}
	return m, nil
}

// resolve returns a value given directly or through a file; giving both is an
// error because the operator's intent is ambiguous.
func resolve(setting func(string) string, field, value, file string) (string, error) {
	if value != "" && file != "" {
		return "", fmt.Errorf("%s and %s are both set; set only one", setting(field), setting(field+"_file"))
	}
	if file != "" {
		return ReadSecretFile(setting(field+"_file"), file)
	}
	return value, nil
}

func newFilter(setting func(string) string, c ModuleConfig) (Filter, error) {
	var f Filter
	for _, p := range []struct {
		field, pattern string
		dst            **regexp.Regexp
	}{
		{"include_vhosts", c.IncludeVhosts, &f.IncludeVhosts},
		{"exclude_vhosts", c.ExcludeVhosts, &f.ExcludeVhosts},
		{"include_queues", c.IncludeQueues, &f.IncludeQueues},
		{"exclude_queues", c.ExcludeQueues, &f.ExcludeQueues},
	} {
		if p.pattern == "" {
			continue
		}
		re, err := CompileAnchored(setting(p.field), p.pattern)
		if err != nil {
			return Filter{}, err
		}
		*p.dst = re
	}
	return f, nil
}
