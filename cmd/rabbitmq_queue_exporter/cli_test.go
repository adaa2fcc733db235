package main

import (
	"errors"
	"os"
	"runtime/debug"

	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
)

func runBinary(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(exporterBinary, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

func TestVersion(t *testing.T) {
	out, code := runBinary(t, nil, "--version")
	if code != 0 {
		t.Fatalf("--version exited %d: %s", code, out)
	}
	version, _ := os.ReadFile(filepath.Join(repoRoot(), "VERSION"))
	flat := strings.Join(strings.Fields(out), " ")
	for _, want := range []string{
		"rabbitmq_queue_exporter, version " + strings.TrimSpace(string(version)),
		"branch: " + testBranch, "revision: " + testRevision, "build date: " + testDate, "build user: tester@ci", "go version: go1.",
	} {
		if !strings.Contains(flat, want) {
			t.Errorf("--version output lacks %q:\n%s", want, out)
		}
	}
}

// TestVersionWithoutBuildScript: a binary built by plain `go build`/`go install`
// (no -ldflags) still reports a version: the module's, or "unknown" for a work
// tree, with the VCS revision Go stamps.
func TestVersionWithoutBuildScript(t *testing.T) {
	for _, tc := range []struct {
		bi   *debug.BuildInfo
		want string
	}{
		{&debug.BuildInfo{Main: debug.Module{Path: "github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter", Version: "v0.2.0"}}, "v0.2.0"},
		{&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "unknown"},
		{nil, "unknown"},
	} {
		if got := moduleVersion(tc.bi); got != tc.want {
			t.Errorf("moduleVersion(%+v) = %q, want %q", tc.bi, got, tc.want)
		}
	}
	bin := filepath.Join(t.TempDir(), "plain")
	build := exec.Command("go", "build", "-o", bin, "./cmd/rabbitmq_queue_exporter")
	build.Dir = repoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "rabbitmq_queue_exporter, version unknown") || strings.Contains(string(out), "version  ") {
		t.Fatalf("--version of a plain build: %v\n%s", err, out)
	}
	if rev := regexp.MustCompile(`revision: ([0-9a-f]{40}|unknown)`).FindString(string(out)); rev == "" {
		t.Fatalf("--version of a plain build shows no revision:\n%s", out)
	}
}

// TestHelpDocumentsEveryFlag keeps --help complete: every flag has a help text.
func TestHelpDocumentsEveryFlag(t *testing.T) {
	out, code := runBinary(t, nil, "--help")
	if code != 0 {
		t.Fatalf("--help exited %d", code)
	}
	flags := regexp.MustCompile(`(?m)^\s+(?:-\w, )?--(?:\[no-\])?([a-z0-9.-]+)(?:=\S+)?\s*(.*)$`).FindAllStringSubmatch(out, -1)
	if len(flags) < 20 {
		t.Fatalf("found only %d flags in --help:\n%s", len(flags), out)
	}
	for _, want := range []string{"rabbitmq.host", "rabbitmq.password-file", "probe.allowed-targets", "config.file", "config.check", "web.config.file", "web.listen-address", "metrics.queues", "log.level", "rabbitmq.max-response-bytes"} {
		if !strings.Contains(out, "--"+want) && !strings.Contains(out, "--[no-]"+want) {
			t.Errorf("--help lacks --%s", want)
		}
	}
	// Every setting config names in its errors is a flag with that variable.
	for _, names := range config.EnvSettingNames() {
		flag := strings.TrimPrefix(names[0], "--")
		if !strings.Contains(out, "--"+flag) && !strings.Contains(out, "--[no-]"+flag) || !strings.Contains(out, "$"+names[1]) {
			t.Errorf("--help lacks %s with $%s", names[0], names[1])
		}
	}
}

func TestStartupErrors(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badCfg := filepath.Join(dir, "bad.yml")
	if err := os.WriteFile(badCfg, []byte("auth_modules:\n  a:\n    username: u\n    pasword: p\n    targets: ['.*']\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"bad host", []string{"RABBITMQ_HOST=ftp://rabbit"}, nil, `--rabbitmq.host / RABBITMQ_HOST: target scheme "ftp" is not supported`},
		{"password and file", []string{"RABBITMQ_PASSWORD=x", "RABBITMQ_PASSWORD_FILE=" + pw}, nil, "--rabbitmq.password / RABBITMQ_PASSWORD and --rabbitmq.password-file / RABBITMQ_PASSWORD_FILE are both set; set only one"},
		{"user and file", []string{"RABBITMQ_USER=x", "RABBITMQ_USER_FILE=" + pw}, nil, "RABBITMQ_USER and --rabbitmq.user-file / RABBITMQ_USER_FILE are both set"},
		{"missing password file", []string{"RABBITMQ_PASSWORD_FILE=" + filepath.Join(dir, "nope")}, nil, "RABBITMQ_PASSWORD_FILE: cannot read"},
		{"bad allow-list", []string{"RABBITMQ_PROBE_ALLOWED_TARGETS=("}, nil, "RABBITMQ_PROBE_ALLOWED_TARGETS: invalid regular expression"},
		{"bad config file", nil, []string{"--config.file=" + badCfg}, "field pasword not found"},
		{"bad flag", nil, []string{"--no-such-flag"}, "unknown long flag"},
		{"endless password file", []string{"RABBITMQ_PASSWORD_FILE=/dev/zero"}, nil, `--rabbitmq.password-file / RABBITMQ_PASSWORD_FILE: "/dev/zero" is not a regular file`},
		{"size without unit, garbled", []string{"RABBITMQ_MAX_RESPONSE_BYTES=1000x"}, nil, `--rabbitmq.max-response-bytes / RABBITMQ_MAX_RESPONSE_BYTES: invalid value "1000x": unknown unit "x"`},
		{"zero size", []string{"RABBITMQ_MAX_RESPONSE_BYTES=0B"}, nil, "RABBITMQ_MAX_RESPONSE_BYTES: invalid value \"0B\": must be larger than 0"},
		{"negative size", nil, []string{"--rabbitmq.max-response-bytes=-5MiB"}, "--rabbitmq.max-response-bytes / RABBITMQ_MAX_RESPONSE_BYTES: invalid value \"-5MiB\""},
		{"bool env", []string{"RABBITMQ_METRICS_QUEUES=maybe"}, nil, `--[no-]metrics.queues / RABBITMQ_METRICS_QUEUES: invalid value "maybe": want true or false`},
		{"tls bool env", []string{"RABBITMQ_TLS_INSECURE_SKIP_VERIFY=yes"}, nil, `--rabbitmq.tls.insecure-skip-verify / RABBITMQ_TLS_INSECURE_SKIP_VERIFY: invalid value "yes"`},
		{"tls version", []string{"RABBITMQ_TLS_MIN_VERSION=TLS9"}, nil, `--rabbitmq.tls.min-version / RABBITMQ_TLS_MIN_VERSION: invalid value "TLS9": unknown TLS version`},
		{"source", []string{"RABBITMQ_SOURCE=plugin"}, nil, `--rabbitmq.source / RABBITMQ_SOURCE: unknown source "plugin"`},
		{"field", []string{"RABBITMQ_QUEUE_FIELDS=messages,consumer"}, nil, `--queue.fields / RABBITMQ_QUEUE_FIELDS: unknown field "consumer" (valid: messages, messages_ready, messages_unacknowledged, consumers, consumer_capacity, head_message_timestamp,`},
		{"field flag", nil, []string{"--queue.fields=ready"}, `--queue.fields / RABBITMQ_QUEUE_FIELDS: unknown field "ready" (valid: messages,`},
		{"duration", nil, []string{"--probe.default-timeout=soon"}, `--probe.default-timeout: invalid value "soon": want a duration`},
		{"zero duration", nil, []string{"--probe.default-timeout=0s"}, `--probe.default-timeout: invalid value "0s": must be at least 1ms`},
		{"negative offset", nil, []string{"--probe.timeout-offset=-1s"}, `--probe.timeout-offset: invalid value "-1s": must not be negative`},
		{"negative limit", nil, []string{"--web.max-requests=-1"}, `--web.max-requests: invalid value "-1": must be at least 0`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, code := runBinary(t, tc.env, append(tc.args, "--config.check")...)
			if code == 0 || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, output %q; want non-zero and %q", code, out, tc.want)
			}
			if lines := strings.Count(strings.TrimSpace(out), "\n"); lines > 0 {
				t.Errorf("want one line, got:\n%s", out)
			}
		})
	}
	out, code := runBinary(t, []string{"RABBITMQ_PASSWORD_FILE=" + pw, "RABBITMQ_MAX_RESPONSE_BYTES=1000", "RABBITMQ_SOURCE=auto"}, "--config.check")
	if code != 0 || !strings.Contains(out, "configuration is valid") || !strings.Contains(out, "source auto") {
		t.Fatalf("valid configuration: exit %d %q", code, out)
	}
}
