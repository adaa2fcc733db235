package main

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/testbed"
)

// TestProbeRealTLSListener probes the second node's TLS management listener
// (management.ssl.*, certificate from the test bed's CA) over https, with the
// right CA, without it, and with a CA that did not sign the certificate.
func TestProbeRealTLSListener(t *testing.T) {
	second := testbed.Second(t)
	q := testbed.UniqueName("it.tls.")
	conn := second.Dial(t, "/")
	second.DeclareQueue(t, conn, q, testbed.Classic)
	second.Publish(t, conn, q, 4)
	second.WaitForCounts(t, "/", q, 4, 4, 0, 30*time.Second)

	dir := t.TempDir()
	otherCA := filepath.Join(dir, "other")
	if out, err := execScript(filepath.Join(repoRoot(), "scripts", "gen-certs.sh"), otherCA); err != nil {
		t.Fatalf("gen-certs: %v\n%s", err, out)
	}
	tlsURL, _ := url.Parse(testbed.SecondTLSURL)
	module := func(name, tlsConfig string) string {
		return fmt.Sprintf("  %s:\n    username: %s\n    password: %s\n    targets: ['(127\\.0\\.0\\.1|localhost):%s']\n%s", name, second.User, second.Password, tlsURL.Port(), tlsConfig)
	}
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte("auth_modules:\n"+
		module("right_ca", "    tls_config:\n      ca_file: "+testbed.SecondCAFile+"\n")+
		module("system_roots", "")+
		module("wrong_ca", "    tls_config:\n      ca_file: "+filepath.Join(otherCA, "exporter.crt")+"\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startExporter(t, nil, "--config.file="+cfg, "--no-metrics.queues")

	tests := []struct {
		module, target string
		success        float64
		log            string
	}{
		{"right_ca", "https://127.0.0.1:" + tlsURL.Port(), 1, ""},
		{"right_ca", "https://localhost:" + tlsURL.Port(), 1, ""},
		{"system_roots", "https://127.0.0.1:" + tlsURL.Port(), 0, "certificate signed by unknown authority"},
		{"wrong_ca", "https://127.0.0.1:" + tlsURL.Port(), 0, "certificate signed by unknown authority"},
	}
	// Credentials configured for TLS are never sent over plain http (they
	// would cross the wire in clear even though the port speaks TLS).
	res := p.get(t, "/probe?auth_module=right_ca&target="+url.QueryEscape("http://127.0.0.1:"+tlsURL.Port()), nil)
	if res.status != 403 || !strings.Contains(res.body, "never sent over plain http") {
		t.Fatalf("http to a TLS-configured module: %d %s", res.status, res.body)
	}
	for _, tc := range tests {
		t.Run(tc.module+" "+tc.target, func(t *testing.T) {
			// The longest timeout: a loaded second node lists slowly.
			res := p.get(t, "/probe?auth_module="+tc.module+"&target="+url.QueryEscape(tc.target), timeoutHeader("120"))
			s := res.samples(t)
			if res.status != 200 || s["probe_success"] != tc.success {
				t.Fatalf("%d probe_success=%v, want %v\n%s", res.status, s["probe_success"], tc.success, res.body)
			}
			host, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(tc.target, "https://"), "http://"), ":")
			if tc.success == 1 && s[queueKey("rabbitmq_individual_queue_messages_ready", host, "/", q)] != 4 {
				t.Fatalf("queue sample missing over https:\n%s", res.body)
			}
			if tc.log != "" {
				p.waitLog(t, tc.log)
			}
		})
	}
}
