package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/scrapetest"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/testbed"
)

// TestRealPrometheusRelabelling runs a real Prometheus (Debian's package) with
// the relabel recipe from the README over both broker nodes and checks, through
// its query API, each broker's series with the right instance, host, vhost,
// name and value.
func TestRealPrometheusRelabelling(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("prometheus is not installed (scripts/test-deps.sh installs it)")
		}
		t.Skip("prometheus is not installed")
	}
	primary, second, qa, qb := queuesOnBothBrokers(t, "it.prom.", testbed.Classic, 3, 6)
	suffix := strings.TrimPrefix(qa, "it.prom.a.")

	pa, _ := url.Parse(primary.MgmtURL)
	pb, _ := url.Parse(second.MgmtURL)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "exporter.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`auth_modules:
  primary:
    username: %s
    password: %s
    targets: ['127\.0\.0\.1:%s']
  second:
    username: %s
    password: %s
    targets: ['127\.0\.0\.1:%s']
`, primary.User, primary.Password, pa.Port(), second.User, second.Password, pb.Port())), 0o600); err != nil {
		t.Fatal(err)
	}
	exp := startExporter(t, nil, "--config.file="+cfg, "--no-metrics.queues")

	promAddr := freePort(t)
	promCfg := filepath.Join(dir, "prometheus.yml")
	// A loaded broker can take seconds to list its queues (the test bed's
	// primary may hold make bench's 10k): a short scrape timeout would make
	// every scrape fail there, and the loop below polls for the series anyway.
	if err := os.WriteFile(promCfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 10s
  scrape_timeout: 10s
scrape_configs:
  - job_name: rabbitmq
    metrics_path: /probe
    static_configs:
      - targets: ['%s']
        labels: {auth_module: primary}
      - targets: ['%s']
        labels: {auth_module: second}
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [auth_module]
        target_label: __param_auth_module
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: '%s'
`, pa.Host, pb.Host, exp.addr)), 0o600); err != nil {
		t.Fatal(err)
	}
	prom := exec.Command(promBin, "--config.file="+promCfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	promLogs := &scrapetest.LockedBuffer{}
	prom.Stdout, prom.Stderr = promLogs, promLogs
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prom.Process.Kill(); _ = prom.Wait() })

	type series struct {
		Metric map[string]string `json:"metric"`
		Value  [2]any            `json:"value"`
	}
	query := func(q string) ([]series, error) {
		resp, err := http.Get("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var out struct {
			Status string `json:"status"`
			Data   struct {
				Result []series `json:"result"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return nil, err
		}
		return out.Data.Result, nil
	}
	want := map[string]struct {
		instance string
		value    float64
	}{qa: {pa.Host, 3}, qb: {pb.Host, 6}}
	deadline := time.Now().Add(testbed.Patience)
	for {
		res, err := query(fmt.Sprintf(`rabbitmq_individual_queue_messages_ready{name=~"it\\.prom\\..\\.%s"}`, suffix))
		ok := err == nil && len(res) == 2
		if ok {
			for _, s := range res {
				w, known := want[s.Metric["name"]]
				v, _ := strconv.ParseFloat(fmt.Sprint(s.Value[1]), 64)
				if !known || s.Metric["instance"] != w.instance || s.Metric["host"] != "127.0.0.1" || s.Metric["vhost"] != "/" ||
					s.Metric["job"] != "rabbitmq" || v != w.value {
					ok = false
					if time.Now().After(deadline) {
						t.Fatalf("unexpected series %v = %v, want instance %s value %v", s.Metric, v, w.instance, w.value)
					}
				}
			}
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus has no matching series (err %v, %d results)\nprometheus log:\n%s\nexporter log:\n%s", err, len(res), promLogs, exp.logs)
		}
		time.Sleep(time.Second)
	}
	up, err := query(`probe_success{job="rabbitmq"}`)
	if err != nil || len(up) != 2 {
		t.Fatalf("probe_success series: %v %v", up, err)
	}
	for _, s := range up {
		if fmt.Sprint(s.Value[1]) != "1" {
			t.Errorf("probe_success for %s = %v", s.Metric["instance"], s.Value[1])
		}
	}
}
