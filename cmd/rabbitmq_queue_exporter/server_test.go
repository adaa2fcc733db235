package main

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestSampleWebConfig serves with the repository's own web-config.yml (TLS and
// bcrypt basic auth) and its demo certificate made by scripts/gen-certs.sh.
func TestSampleWebConfig(t *testing.T) {
	dir := t.TempDir()
	sample, err := os.ReadFile(filepath.Join(repoRoot(), "web-config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "web-config.yml"), sample, 0o600); err != nil {
		t.Fatal(err)
	}
	gen := exec.Command(filepath.Join(repoRoot(), "scripts", "gen-certs.sh"), filepath.Join(dir, "tls"))
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("gen-certs.sh: %v\n%s", err, out)
	}
	p := startExporter(t, []string{"RABBITMQ_HOST=127.0.0.1:1"}, "--web.config.file="+filepath.Join(dir, "web-config.yml"), "--no-metrics.queues")

	for _, path := range []string{"/metrics", "/probe?target=127.0.0.1:1", "/", "/-/healthy", "/-/reload"} {
		for _, auth := range []struct {
			name, user, pass string
			want             int
		}{{"none", "", "", 401}, {"wrong password", "prometheus", "wrong", 401}, {"wrong user", "admin", "change-me", 401}, {"right", "prometheus", "change-me", 0}} {
			req, _ := http.NewRequest(http.MethodGet, p.url(path), nil)
			if auth.user != "" {
				req.SetBasicAuth(auth.user, auth.pass)
			}
			resp, err := p.client.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", path, auth.name, err)
			}
			resp.Body.Close()
			if auth.want == 401 && resp.StatusCode != 401 {
				t.Errorf("%s with %s credentials: status %d, want 401", path, auth.name, resp.StatusCode)
			}
			if auth.want == 0 && resp.StatusCode == 401 {
				t.Errorf("%s with the right credentials: 401", path)
			}
		}
	}
	// Plain HTTP to the TLS port must not be served.
	resp, err := http.Get("http://" + p.addr + "/metrics")
	if err == nil {
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain http answered %d", resp.StatusCode)
		}
		resp.Body.Close()
	}
	// The certificate made by gen-certs.sh verifies for localhost.
	pemBytes, _ := os.ReadFile(filepath.Join(dir, "tls", "exporter.crt"))
	pool := x509Pool(t, pemBytes)
	strict := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest(http.MethodGet, "https://localhost:"+strings.Split(p.addr, ":")[1]+"/-/healthy", nil)
	req.SetBasicAuth("prometheus", "change-me")
	resp, err = strict.Do(req)
	if err != nil {
		t.Fatalf("verified TLS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthy over verified TLS: %d", resp.StatusCode)
	}
}

// TestReloadPasswordFile: change the password file, SIGHUP, and the next probe
// uses the new secret; a broken config file is rejected and the old one kept.
func TestReloadPasswordFile(t *testing.T) {
	var lastPassword atomic.Value
	broker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pw, _ := r.BasicAuth()
		lastPassword.Store(pw)
		if pw != "second-secret" && pw != "first-secret" {
			w.WriteHeader(401)
			return
		}
		w.Write([]byte(`[{"name":"q","vhost":"/","messages":1,"messages_ready":1,"messages_unacknowledged":0}]`))
	}))
	defer broker.Close()
	u, _ := url.Parse(broker.URL)

	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	modPw := filepath.Join(dir, "module-pw")
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(pwFile, []byte("first-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(modPw, []byte("first-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	goodCfg := "auth_modules:\n  m:\n    username: mon\n    password_file: " + modPw + "\n    targets: ['127\\.0\\.0\\.1:.*']\n"
	if err := os.WriteFile(cfg, []byte(goodCfg), 0o600); err != nil {
		t.Fatal(err)
	}

	p := startExporter(t, []string{"RABBITMQ_HOST=" + u.Host, "RABBITMQ_PASSWORD_FILE=" + pwFile}, "--config.file="+cfg)
	probe := func(query string) map[string]float64 {
		return p.get(t, "/probe?"+query, nil).samples(t)
	}
	if s := probe(""); s["probe_success"] != 1 || lastPassword.Load() != "first-secret" {
		t.Fatalf("first probe: %v, password %v", s, lastPassword.Load())
	}

	if err := os.WriteFile(pwFile, []byte("second-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(modPw, []byte("second-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(p.logs.String(), "configuration reloaded") })
	if s := probe(""); s["probe_success"] != 1 || lastPassword.Load() != "second-secret" {
		t.Fatalf("after SIGHUP the env module still uses the old secret (%v)", lastPassword.Load())
	}
	if s := probe("auth_module=m"); s["probe_success"] != 1 || lastPassword.Load() != "second-secret" {
		t.Fatalf("after SIGHUP auth module m still uses the old secret (%v)", lastPassword.Load())
	}

	// A broken file: POST /-/reload answers 500, the old config stays, metrics say so.
	if err := os.WriteFile(cfg, []byte("auth_modules:\n  m:\n    usernme: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err := p.client.Post(p.url("/-/reload"), "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 500 {
		t.Fatalf("reload of a broken file answered %d, want 500", resp.StatusCode)
	}
	if s := probe("auth_module=m"); s["probe_success"] != 1 {
		t.Fatal("old configuration lost after a failed reload")
	}
	m := p.get(t, "/metrics", nil).samples(t)
	if m["rabbitmq_queue_exporter_config_last_reload_successful"] != 0 || m["rabbitmq_queue_exporter_config_last_reload_success_timestamp_seconds"] < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Fatalf("reload metrics wrong: %v", m["rabbitmq_queue_exporter_config_last_reload_successful"])
	}
	if err := os.WriteFile(cfg, []byte(goodCfg), 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err = p.client.Post(p.url("/-/reload"), "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || p.get(t, "/metrics", nil).samples(t)["rabbitmq_queue_exporter_config_last_reload_successful"] != 1 {
		t.Fatalf("good reload: %d", resp.StatusCode)
	}
	if strings.Contains(p.logs.String(), "second-secret") || strings.Contains(p.logs.String(), "first-secret") {
		t.Fatal("a password appeared in the log")
	}
	if err := p.stop(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v (want 0)\n%s", err, p.logs)
	}
}

func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
