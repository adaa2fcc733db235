package config

import (
	"strings"
	"testing"

	commoncfg "github.com/prometheus/common/config"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/brokerhttp"
)

// TestAllowsScheme: credentials configured for TLS never go over plain http,
// and a pattern written with a scheme pins it.
func TestAllowsScheme(t *testing.T) {
	tests := []struct {
		name    string
		config  ModuleConfig
		allowed []string
		refused map[string]string // target -> part of the reason
	}{
		{
			name:    "no TLS configured: either scheme",
			config:  ModuleConfig{Targets: []string{`rabbit:1\d+`}},
			allowed: []string{"http://rabbit:15672", "https://rabbit:15671"},
			refused: map[string]string{"http://other:15672": "matches no pattern in targets"},
		},
		{
			name:    "tls_config makes it TLS-bound",
			config:  ModuleConfig{Targets: []string{`rabbit:1\d+`}, TLSConfig: commoncfg.TLSConfig{ServerName: "rabbit"}},
			allowed: []string{"https://rabbit:15671", "https://rabbit:15672"},
			refused: map[string]string{"http://rabbit:15671": "never sent over plain http; use https://rabbit:15671", "rabbit:15672": "never sent over plain http"},
		},
		{
			name:    "scheme in the pattern",
			config:  ModuleConfig{Targets: []string{`https://rabbit:15671`, `http://dev:15672`}},
			allowed: []string{"https://rabbit:15671", "dev", "http://dev:15672"},
			refused: map[string]string{"http://rabbit:15671": "matches no pattern", "https://dev:15672": "matches no pattern"},
		},
		{
			name:    "host patterns match the canonical host the transport dials",
			config:  ModuleConfig{Targets: []string{`[^.]+:15672`}},
			allowed: []string{"localhost"},
			refused: map[string]string{"127\u30020\u30020\u30021:15672": "matches no pattern", "http://localhost\uff0e:15672": "matches no pattern"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.config.Username, tc.config.Password = "u", "p"
			m, err := buildModule("m", tc.config, func(f string) string { return f }, BuildOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, in := range tc.allowed {
				if err := m.Allows(mustTarget(t, in)); err != nil {
					t.Errorf("Allows(%s) = %v, want allowed", in, err)
				}
			}
			for in, reason := range tc.refused {
				err := m.Allows(mustTarget(t, in))
				if err == nil || !strings.Contains(err.Error(), reason) {
					t.Errorf("Allows(%s) = %v, want refusal containing %q", in, err, reason)
				}
			}
		})
	}
}

func mustTarget(t *testing.T, s string) brokerhttp.Target {
	t.Helper()
	tgt, err := brokerhttp.ParseTarget(s)
	if err != nil {
		t.Fatal(err)
	}
	return tgt
}

// TestEnvModule: flags and env produce a module through the same build as a
// file module, and errors name the flag and its variable.
func TestEnvModule(t *testing.T) {
	dir := t.TempDir()
	pw := writeFile(t, dir, "pw", "from-file\n")
	str := func(s string) *string { return &s }
	tests := []struct {
		name  string
		flags EnvFlags
		err   string
		check func(t *testing.T, g *Generation)
	}{
		{name: "defaults", flags: EnvFlags{Host: "localhost"}, check: func(t *testing.T, g *Generation) {
			if g.Env.Credentials.Username != "guest" || string(g.Env.Credentials.Password) != "guest" || g.Env.Source != SourceManagement {
				t.Fatalf("env module %+v", g.Env.Credentials)
			}
			for in, want := range map[string]bool{"localhost": true, "https://localhost:15672": true, "localhost:15673": false, "other": false} {
				if got := g.Env.Allows(mustTarget(t, in)) == nil; got != want {
					t.Errorf("Allows(%s) = %v, want %v", in, got, want)
				}
			}
		}},
		{name: "https host binds the credentials to TLS", flags: EnvFlags{Host: "https://localhost:9000", AllowedTargets: ".*"}, check: func(t *testing.T, g *Generation) {
			for in, want := range map[string]bool{"https://localhost:9000": true, "http://localhost:9000": false, "http://other:1": false, "https://other:1": true} {
				if got := g.Env.Allows(mustTarget(t, in)) == nil; got != want {
					t.Errorf("Allows(%s) = %v, want %v", in, got, want)
				}
			}
		}},
		{name: "password file", flags: EnvFlags{Host: "h", User: str("mon"), PasswordFile: pw, Source: "auto", PluginEndpoints: " http://a:15692 ,https://b:15691"}, check: func(t *testing.T, g *Generation) {
			if g.Env.Credentials.Username != "mon" || string(g.Env.Credentials.Password) != "from-file" || g.Env.Source != SourceAuto || len(g.Env.PluginEndpoints) != 2 || g.Env.PluginEndpoints[1].String() != "https://b:15691" {
				t.Fatalf("env module %+v %v %v", g.Env.Credentials, g.Env.Source, g.Env.PluginEndpoints)
			}
		}},
		{name: "bad host", flags: EnvFlags{Host: "ftp://x"}, err: `--rabbitmq.host / RABBITMQ_HOST: target scheme "ftp"`},
		{name: "both passwords", flags: EnvFlags{Host: "h", Password: str("x"), PasswordFile: pw}, err: "--rabbitmq.password / RABBITMQ_PASSWORD and --rabbitmq.password-file / RABBITMQ_PASSWORD_FILE are both set"},
		{name: "endless password file", flags: EnvFlags{Host: "h", PasswordFile: "/dev/zero"}, err: `--rabbitmq.password-file / RABBITMQ_PASSWORD_FILE: "/dev/zero" is not a regular file`},
		{name: "empty user", flags: EnvFlags{Host: "h", User: str("")}, err: "--rabbitmq.user / RABBITMQ_USER is required"},
		{name: "bad allowed targets", flags: EnvFlags{Host: "h", AllowedTargets: "("}, err: "--probe.allowed-targets / RABBITMQ_PROBE_ALLOWED_TARGETS: invalid regular expression"},
		{name: "bad filter", flags: EnvFlags{Host: "h", ExcludeQueues: "["}, err: "--rabbitmq.exclude-queues / RABBITMQ_EXCLUDE_QUEUES: invalid regular expression"},
		{name: "bad source", flags: EnvFlags{Host: "h", Source: "x"}, err: "--rabbitmq.source / RABBITMQ_SOURCE: unknown source"},
		{name: "bad ca", flags: EnvFlags{Host: "h", TLS: commoncfg.TLSConfig{CAFile: "/nonexistent"}}, err: "--rabbitmq.tls.ca-file / RABBITMQ_TLS_CA_FILE: cannot read"},
		{name: "bad proxy", flags: EnvFlags{Host: "h", ProxyURL: "::"}, err: "--rabbitmq.proxy-url / RABBITMQ_PROXY_URL: invalid proxy URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, err := Load(&tc.flags, "", BuildOptions{})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("error = %v, want one line containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, g)
		})
	}
}
