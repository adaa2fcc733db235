package main

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/testbed"
)

// secretSpellings are the forms a leaked password could take in a log line
// or a page: raw, URL-, JSON- and logfmt-escaped (all contain the core), and
// base64 as in a Basic auth header.
func secretSpellings(secret string) []string {
	core, _, _ := strings.Cut(secret, "-")
	j, _ := json.Marshal(secret)
	return []string{
		secret, core, url.QueryEscape(secret), url.PathEscape(secret), string(j),
		base64.StdEncoding.EncodeToString([]byte(leakUser + ":" + secret)),
		base64.StdEncoding.EncodeToString([]byte(secret)),
		base64.URLEncoding.EncodeToString([]byte(leakUser + ":" + secret)),
	}
}

// TestSecretsNeverLeak runs every case of the fault matrix with the env
// credentials and with an auth module whose password comes from a file, each
// also as a debug=true probe, and then looks for the passwords in every log
// line and every response body, 4xx answers and debug pages included.
func TestSecretsNeverLeak(t *testing.T) {
	e := startFaultEnv(t)
	join := func(q, extra string) string {
		if q == "" {
			return extra
		}
		return q + "&" + extra
	}
	probes := 0
	for _, c := range faultCases() {
		if c.heavy && !testbed.Full() {
			continue // multi-GB streams: the full lane's
		}
		base := c.query(e)
		variants := []string{base, join(base, "debug=true")}
		// Slow and multi-GB cases only twice: they add time, not new paths.
		if c.within == 0 && !strings.Contains(base, "auth_module=") {
			variants = append(variants, join(base, "auth_module=leak"), join(base, "auth_module=leak&debug=true"))
		}
		for _, v := range variants {
			res, _ := e.run(t, c, v)
			if res.status >= 500 {
				t.Errorf("%s (%s): status %d", c.name, v, res.status)
			}
			probes++
		}
	}
	// The secrets were really in play: each reached the fake broker.
	e.broker.mu.Lock()
	if !e.broker.seen[envSecret] || !e.broker.seen[moduleSecret] || len(e.broker.seen) != 2 {
		t.Errorf("the fake broker got passwords %v, want exactly the env and module secrets", e.broker.seen)
	}
	e.broker.mu.Unlock()
	pages := []string{"/", "/metrics", "/-/healthy", "/probe?debug=true", "/probe?debug=true&auth_module=leak&target=" + url.QueryEscape(e.broker.target("ok"))}
	for _, path := range pages {
		e.bodies = append(e.bodies, e.p.get(t, path, nil).body)
	}

	// --config.check prints the effective configuration's outcome; broken
	// files whose errors could quote a secret must not either.
	outputs := map[string]string{}
	out, code := runBinary(t, e.env, append(e.args, "--config.check")...)
	if code != 0 {
		t.Errorf("--config.check exited %d: %s", code, out)
	}
	outputs["--config.check"] = out
	for name, doc := range map[string]string{
		"misspelt key":  "auth_modules:\n  m:\n    username: u\n    pasword: " + moduleSecret + "\n    targets: ['.*']\n",
		"wrong type":    "auth_modules:\n  m:\n    username: u\n    password: {nested: " + moduleSecret + "}\n    targets: ['.*']\n",
		"both set":      "auth_modules:\n  m:\n    username: u\n    password: " + moduleSecret + "\n    password_file: /nonexistent\n    targets: ['.*']\n",
		"bad target re": "auth_modules:\n  m:\n    username: u\n    password: " + moduleSecret + "\n    targets: ['(']\n",
	} {
		path := filepath.Join(e.dir, "broken.yml")
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		out, code := runBinary(t, e.env, "--config.check", "--config.file="+path)
		if code != 2 {
			t.Errorf("%s: --config.check exited %d, want 2: %s", name, code, out)
		}
		outputs["--config.check with "+name] = out
	}

	logs := e.p.logs.String()
	t.Logf("searched %d probe answers, %d other pages, %d config checks and %d log lines", probes, len(pages), len(outputs), strings.Count(logs, "\n"))
	for _, secret := range []string{envSecret, moduleSecret} {
		for _, s := range secretSpellings(secret) {
			for i, line := range strings.Split(logs, "\n") {
				if strings.Contains(line, s) {
					t.Errorf("log line %d holds a secret (%q): %s", i+1, s, line)
				}
			}
			for _, body := range e.bodies {
				if strings.Contains(body, s) {
					t.Errorf("a response holds a secret (%q): %.600s", s, body[max(0, strings.Index(body, s)-300):])
				}
			}
			for name, out := range outputs {
				if strings.Contains(out, s) {
					t.Errorf("%s output holds a secret (%q): %s", name, s, out)
				}
			}
		}
	}
}
