package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	commoncfg "github.com/prometheus/common/config"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/brokerhttp"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	pwFile := writeFile(t, dir, "pw", "file-secret\n")
	tests := []struct {
		name string
		yaml string
		err  string
		want func(t *testing.T, m map[string]*Module)
	}{
		{name: "empty file", yaml: "", want: func(t *testing.T, m map[string]*Module) {
			if len(m) != 0 {
				t.Fatalf("want no modules, got %d", len(m))
			}
		}},
		{name: "complete", yaml: `
auth_modules:
  prod:
    username: monitor
    password_file: ` + pwFile + `
    targets: ['rabbit-[ab]\.prod:15672', 'rabbit-c\.prod:.*']
    timeout: 7s
    include_vhosts: 'prod.*'
    exclude_queues: 'amq\.gen-.*'
  dev:
    username: guest
    password: guest
    targets: ['.*']
`, want: func(t *testing.T, m map[string]*Module) {
			prod := m["prod"]
			if prod == nil || prod.Credentials.Username != "monitor" || string(prod.Credentials.Password) != "file-secret" || prod.Timeout.Seconds() != 7 {
				t.Fatalf("prod module = %+v", prod)
			}
			allow := map[string]bool{"rabbit-a.prod": true, "http://rabbit-b.prod:15672": true, "rabbit-a.prod:15673": false,
				"https://rabbit-a.prod": false, "rabbit-c.prod:1": true, "xrabbit-a.prod": false, "rabbit-a.prod.evil": false}
			for in, want := range allow {
				tgt, err := brokerhttp.ParseTarget(in)
				if err != nil {
					t.Fatal(err)
				}
				if got := prod.Allows(tgt) == nil; got != want {
					t.Errorf("prod.Allows(%s) = %v, want %v", in, got, want)
				}
			}
			if !prod.Filter.Keep([]byte("prod-eu"), []byte("orders")) || prod.Filter.Keep([]byte("dev"), []byte("orders")) || prod.Filter.Keep([]byte("prod"), []byte("amq.gen-123")) {
				t.Error("filter does not select as configured")
			}
			if !m["dev"].Filter.Empty() {
				t.Error("dev has no filter")
			}
		}},
		{name: "unknown field", yaml: "auth_modules:\n  a:\n    username: u\n    pasword: x\n    targets: ['.*']\n", err: "field pasword not found"},
		{name: "unknown top-level", yaml: "modules: {}\n", err: "field modules not found"},
		{name: "both password forms", yaml: "auth_modules:\n  a:\n    username: u\n    password: x\n    password_file: " + pwFile + "\n    targets: ['.*']\n", err: "auth_modules.a.password and auth_modules.a.password_file are both set"},
		{name: "no password", yaml: "auth_modules:\n  a:\n    username: u\n    targets: ['.*']\n", err: "auth_modules.a.password or auth_modules.a.password_file is required"},
		{name: "no username", yaml: "auth_modules:\n  a:\n    password: p\n    targets: ['.*']\n", err: "auth_modules.a.username is required"},
		{name: "no targets", yaml: "auth_modules:\n  a:\n    username: u\n    password: p\n", err: "auth_modules.a.targets is required"},
		{name: "bad regexp", yaml: "auth_modules:\n  a:\n    username: u\n    password: p\n    targets: ['(']\n", err: "auth_modules.a.targets[0]: invalid regular expression"},
		{name: "bad filter", yaml: "auth_modules:\n  a:\n    username: u\n    password: p\n    targets: ['.*']\n    include_queues: '['\n", err: "auth_modules.a.include_queues: invalid regular expression"},
		{name: "missing password file", yaml: "auth_modules:\n  a:\n    username: u\n    password_file: /nonexistent/pw\n    targets: ['.*']\n", err: "auth_modules.a.password_file: cannot read"},
		{name: "endless password file", yaml: "auth_modules:\n  a:\n    username: u\n    password_file: /dev/zero\n    targets: ['.*']\n", err: `auth_modules.a.password_file: "/dev/zero" is not a regular file`},
		{name: "both username forms", yaml: "auth_modules:\n  a:\n    username: u\n    username_file: " + pwFile + "\n    password: p\n    targets: ['.*']\n", err: "auth_modules.a.username and auth_modules.a.username_file are both set"},
		{name: "missing ca", yaml: "auth_modules:\n  a:\n    username: u\n    password: p\n    targets: ['.*']\n    tls_config:\n      ca_file: /nonexistent/ca.pem\n", err: "auth_modules.a.tls_config.ca_file: cannot read"},
		{name: "endless ca", yaml: "auth_modules:\n  a:\n    username: u\n    password: p\n    targets: ['.*']\n    tls_config:\n      ca_file: /dev/zero\n", err: "auth_modules.a.tls_config.ca_file"},
		{name: "cert without key", yaml: "auth_modules:\n  a:\n    username: u\n    password: p\n    targets: ['.*']\n    tls_config:\n      cert_file: /x.pem\n", err: "exactly one of key or key_file must be configured"},
		{name: "bad tls version", yaml: "auth_modules:\n  a:\n    username: u\n    password: p\n    targets: ['.*']\n    tls_config:\n      min_version: TLS9\n", err: "unknown TLS version"},
		{name: "bad field", yaml: "auth_modules:\n  a:\n    username: u\n    password: p\n    targets: ['.*']\n    fields: [messages, age]\n", err: `auth_modules.a.fields: unknown field "age" (valid: messages, messages_ready,`},
		{name: "too many fields", yaml: "auth_modules:\n  a:\n    username: u\n    password: p\n    targets: ['.*']\n    fields: [messages, messages_ready, messages_unacknowledged, consumers, consumer_capacity, head_message_timestamp, memory, message_bytes]\n", err: `auth_modules.a.fields: 8 fields chosen, at most 7`},
		{name: "bad source", yaml: "auth_modules:\n  a:\n    username: u\n    password: p\n    targets: ['.*']\n    source: plugin\n", err: `auth_modules.a.source: unknown source "plugin"`},
		{name: "bad plugin endpoint", yaml: "auth_modules:\n  a:\n    username: u\n    password: p\n    targets: ['.*']\n    plugin_endpoints: ['ftp://x']\n", err: `auth_modules.a.plugin_endpoints[0]: target scheme "ftp"`},
		{name: "no_proxy without proxy_url", yaml: "auth_modules:\n  a:\n    username: u\n    password: p\n    targets: ['.*']\n    no_proxy: x\n", err: "auth_modules.a.proxy_url: if no_proxy is configured, proxy_url must also be configured"},
		{name: "not yaml", yaml: "auth_modules: [", err: "config file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, dir, "config.yml", tc.yaml)
			m, err := loadFile(path, BuildOptions{})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Fatalf("multi-line error: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.want(t, m)
		})
	}
}

// TestExampleConfig keeps examples/config.yml valid: strict decoding, and every
// module builds once its files exist (here replaced by test files).
func TestExampleConfig(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "examples", "config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := ParseFile(raw)
	if err != nil {
		t.Fatalf("examples/config.yml: %v", err)
	}
	if len(f.AuthModules) < 2 {
		t.Fatalf("example has %d modules", len(f.AuthModules))
	}
	dir := t.TempDir()
	for name, mc := range f.AuthModules {
		if mc.PasswordFile != "" {
			mc.PasswordFile = writeFile(t, dir, name+".pw", "x\n")
		}
		mc.TLSConfig = commoncfg.TLSConfig{}
		if _, err := buildModule(name, mc, func(f string) string { return f }, BuildOptions{}); err != nil {
			t.Errorf("module %s: %v", name, err)
		}
	}
}

func TestCompileAnchoredError(t *testing.T) {
	_, err := CompileAnchored("setting", "(")
	if err == nil || err.Error() != `setting: invalid regular expression "(": missing closing )` {
		t.Fatalf("error = %v", err)
	}
}
