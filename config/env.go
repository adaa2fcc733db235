package config

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"

	commoncfg "github.com/prometheus/common/config"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/brokerhttp"
)

// EnvFlags are the flags and environment variables of the env credentials:
// the module used by /metrics and by /probe without auth_module. They are
// turned into a ModuleConfig, so they get exactly the validation and build
// of a config-file module.
type EnvFlags struct {
	Host                   string
	User, Password         *string // nil when not given, so a *_FILE variant can be told from a default
	UserFile, PasswordFile string
	AllowedTargets         string
	Source                 string
	Fields                 string // comma-separated
	PluginEndpoints        string // comma-separated
	IncludeVhosts          string
	ExcludeVhosts          string
	IncludeQueues          string
	ExcludeQueues          string
	TLS                    commoncfg.TLSConfig // files, server name, verification, min version
	ProxyURL               string
	NoProxy                string
	ProxyFromEnvironment   bool
}

// envSettings maps a module field to its flag and environment variable, to
// name them in errors. The flags are declared in cmd/rabbitmq_queue_exporter,
// whose tests check that every entry here is a declared flag.
var envSettings = map[string][2]string{
	"username":                        {"--rabbitmq.user", "RABBITMQ_USER"},
	"username_file":                   {"--rabbitmq.user-file", "RABBITMQ_USER_FILE"},
	"password":                        {"--rabbitmq.password", "RABBITMQ_PASSWORD"},
	"password_file":                   {"--rabbitmq.password-file", "RABBITMQ_PASSWORD_FILE"},
	"targets":                         {"--probe.allowed-targets", "RABBITMQ_PROBE_ALLOWED_TARGETS"},
	"source":                          {"--rabbitmq.source", "RABBITMQ_SOURCE"},
	"plugin_endpoints":                {"--rabbitmq.plugin-endpoints", "RABBITMQ_PLUGIN_ENDPOINTS"},
	"fields":                          {"--queue.fields", "RABBITMQ_QUEUE_FIELDS"},
	"include_vhosts":                  {"--rabbitmq.include-vhosts", "RABBITMQ_INCLUDE_VHOSTS"},
	"exclude_vhosts":                  {"--rabbitmq.exclude-vhosts", "RABBITMQ_EXCLUDE_VHOSTS"},
	"include_queues":                  {"--rabbitmq.include-queues", "RABBITMQ_INCLUDE_QUEUES"},
	"exclude_queues":                  {"--rabbitmq.exclude-queues", "RABBITMQ_EXCLUDE_QUEUES"},
	"tls_config":                      {"--rabbitmq.tls.*", "RABBITMQ_TLS_*"},
	"tls_config.ca_file":              {"--rabbitmq.tls.ca-file", "RABBITMQ_TLS_CA_FILE"},
	"tls_config.cert_file":            {"--rabbitmq.tls.cert-file", "RABBITMQ_TLS_CERT_FILE"},
	"tls_config.key_file":             {"--rabbitmq.tls.key-file", "RABBITMQ_TLS_KEY_FILE"},
	"tls_config.server_name":          {"--rabbitmq.tls.server-name", "RABBITMQ_TLS_SERVER_NAME"},
	"tls_config.insecure_skip_verify": {"--rabbitmq.tls.insecure-skip-verify", "RABBITMQ_TLS_INSECURE_SKIP_VERIFY"},
	"tls_config.min_version":          {"--rabbitmq.tls.min-version", "RABBITMQ_TLS_MIN_VERSION"},
	"proxy_url":                       {"--rabbitmq.proxy-url", "RABBITMQ_PROXY_URL"},
	"no_proxy":                        {"--rabbitmq.no-proxy", "RABBITMQ_NO_PROXY"},
	"proxy_from_environment":          {"--rabbitmq.proxy-from-environment", "RABBITMQ_PROXY_FROM_ENVIRONMENT"},
	"host":                            {"--rabbitmq.host", "RABBITMQ_HOST"},
	"max_response_bytes":              {"--rabbitmq.max-response-bytes", "RABBITMQ_MAX_RESPONSE_BYTES"},
}

// EnvSetting names a field of the env credentials as "--flag / ENV_VAR".
func EnvSetting(field string) string {
	if s, ok := envSettings[field]; ok {
		return s[0] + " / " + s[1]
	}
	return "--rabbitmq." + field
}

// TLSVersion is a TLS version as prometheus/common names them (TLS12, TLS13…).
type TLSVersion = commoncfg.TLSVersion

// ParseTLSVersion reads a TLS version name.
func ParseTLSVersion(s string) (TLSVersion, error) {
	if v, ok := commoncfg.TLSVersions[s]; ok {
		return v, nil
	}
	return 0, fmt.Errorf("unknown TLS version (use TLS10, TLS11, TLS12 or TLS13)")
}

// EnvSettingNames lists the flag and environment variable of every field
// EnvSetting knows, for a test that they match the declared flags.
func EnvSettingNames() [][2]string {
	out := make([][2]string, 0, len(envSettings))
	for _, s := range envSettings {
		if !strings.HasSuffix(s[0], "*") {
			out = append(out, s)
		}
	}
	return out
}

// moduleConfig turns the flags into a module configuration. The configured
// host is always an allowed target, with its scheme: an https RABBITMQ_HOST
// also makes the env credentials TLS-bound, so that no scheme-less
// --probe.allowed-targets pattern sends them over plain http.
func (f *EnvFlags) moduleConfig(host brokerhttp.Target) (ModuleConfig, error) {
	c := ModuleConfig{
		UsernameFile: f.UserFile, PasswordFile: f.PasswordFile,
		Source:        Source(f.Source),
		IncludeVhosts: f.IncludeVhosts, ExcludeVhosts: f.ExcludeVhosts,
		IncludeQueues: f.IncludeQueues, ExcludeQueues: f.ExcludeQueues,
		TLSConfig:  f.TLS,
		requireTLS: host.Scheme == "https",
	}
	// guest/guest, RabbitMQ's own default, unless a value or a file is given.
	c.Username, c.Password = "guest", "guest"
	if f.User != nil || f.UserFile != "" {
		c.Username = deref(f.User)
	}
	if f.Password != nil || f.PasswordFile != "" {
		c.Password = Secret(deref(f.Password))
		if f.Password != nil && *f.Password == "" && f.PasswordFile == "" {
			return ModuleConfig{}, fmt.Errorf("%s is empty", EnvSetting("password"))
		}
	}
	own := regexp.QuoteMeta("://" + host.HostPort())
	if host.Scheme == "https" {
		c.Targets = []string{"https" + own}
	} else {
		c.Targets = []string{"https?" + own} // a stronger scheme is fine
	}
	if f.AllowedTargets != "" {
		if _, err := CompileAnchored(EnvSetting("targets"), f.AllowedTargets); err != nil {
			return ModuleConfig{}, err
		}
		c.Targets = append(c.Targets, f.AllowedTargets)
	}
	for n := range strings.SplitSeq(f.Fields, ",") {
		if n = strings.TrimSpace(n); n != "" {
			c.Fields = append(c.Fields, n)
		}
	}
	for e := range strings.SplitSeq(f.PluginEndpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			c.PluginEndpoints = append(c.PluginEndpoints, e)
		}
	}
	if f.ProxyURL != "" {
		u, err := url.Parse(f.ProxyURL)
		if err != nil || u.Host == "" {
			return ModuleConfig{}, fmt.Errorf("%s: invalid proxy URL", EnvSetting("proxy_url"))
		}
		c.ProxyURL = commoncfg.URL{URL: u}
	}
	c.NoProxy, c.ProxyFromEnvironment = f.NoProxy, f.ProxyFromEnvironment
	return c, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
