package examples_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// readmeRecipe returns the scrape configs of the README's Prometheus recipe:
// the first yaml block of its "## Prometheus" section.
func readmeRecipe(t *testing.T) []scrapeConfig {
	t.Helper()
	readme := string(readFile(t, "../README.md"))
	_, section, ok := strings.Cut(readme, "\n## Prometheus\n")
	if !ok {
		t.Fatal("README.md has no ## Prometheus section")
	}
	_, block, ok := strings.Cut(section, "```yaml\n")
	if !ok {
		t.Fatal("the ## Prometheus section has no yaml block")
	}
	block, _, _ = strings.Cut(block, "```")
	var cfg promConfig
	if err := yaml.Unmarshal([]byte(block), &cfg); err != nil {
		t.Fatalf("README recipe: %v", err)
	}
	return cfg.ScrapeConfigs
}

var reJobMatcher = regexp.MustCompile(`job(=~|=)"([^"]*)"`)

// TestAlertsMatchReadmeRecipe checks that every job matcher of alerts.yml
// selects a job the README's recipe defines, and runs the alerts against
// series labelled exactly as that recipe labels them (job, and instance from
// the target), so a user who copies the recipe gets alerts that fire.
func TestAlertsMatchReadmeRecipe(t *testing.T) {
	var probeJob, exporterJob, target string
	for _, sc := range readmeRecipe(t) {
		switch sc.MetricsPath {
		case "/probe":
			if probeJob == "" && len(sc.StaticConfigs) > 0 && len(sc.StaticConfigs[0].Targets) > 0 {
				probeJob, target = sc.JobName, sc.StaticConfigs[0].Targets[0]
			}
		case "", "/metrics":
			exporterJob = sc.JobName
		}
	}
	if probeJob == "" || exporterJob == "" {
		t.Fatalf("README recipe: probe job %q, exporter job %q", probeJob, exporterJob)
	}
	for _, m := range reJobMatcher.FindAllStringSubmatch(string(readFile(t, "alerts.yml")), -1) {
		re := regexp.MustCompile("^(?:" + m[2] + ")$")
		if m[1] == "=" {
			re = regexp.MustCompile("^" + regexp.QuoteMeta(m[2]) + "$")
		}
		if !re.MatchString(probeJob) && !re.MatchString(exporterJob) {
			t.Errorf("alerts.yml matcher job%s%q selects neither job of the README recipe (%s, %s)", m[1], m[2], probeJob, exporterJob)
		}
	}

	pt := promtool(t)
	dir := t.TempDir()
	// promtool compares annotations whenever an alert is expected; this test
	// is about which alerts fire, so it runs the rules without them.
	var rules map[string]any
	if err := yaml.Unmarshal(readFile(t, "alerts.yml"), &rules); err != nil {
		t.Fatal(err)
	}
	walk(rules, func(m map[string]any) { delete(m, "annotations") })
	stripped, err := yaml.Marshal(rules)
	if err != nil {
		t.Fatal(err)
	}
	abs := filepath.Join(dir, "alerts.yml")
	if err := os.WriteFile(abs, stripped, 0o644); err != nil {
		t.Fatal(err)
	}
	// The recipe's relabelling makes the target the instance label; the
	// exporter adds host (the target's host name) to its own series.
	host, _, _ := strings.Cut(hostPort(target), ":")
	probe := fmt.Sprintf(`job=%q,instance=%q`, probeJob, target)
	queue := probe + fmt.Sprintf(`,host=%q,vhost="/",name="orders"`, host)
	tests := fmt.Sprintf(`rule_files: [%q]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'probe_success{%[2]s}'
        values: '0x20'
      - series: 'up{%[2]s}'
        values: '0x20'
      - series: 'up{job=%[4]q,instance="rabbitmq-queue-exporter:9419"}'
        values: '0x20'
      - series: 'rabbitmq_individual_queue_messages_ready{%[3]s}'
        values: '10x20'
      - series: 'rabbitmq_individual_queue_consumers{%[3]s}'
        values: '0x20'
      - series: 'rabbitmq_individual_queue_head_message_timestamp_seconds{%[3]s}'
        values: '0x20'
    alert_rule_test:
      - {eval_time: 15m, alertname: RabbitMQBrokerUnreachable, exp_alerts: [{exp_labels: {severity: critical, %[5]s}}]}
      - {eval_time: 15m, alertname: RabbitMQProbeScrapeFailing, exp_alerts: [{exp_labels: {severity: warning, %[5]s}}]}
      - {eval_time: 15m, alertname: RabbitMQExporterDown, exp_alerts: [{exp_labels: {severity: critical, job: %[4]q, instance: "rabbitmq-queue-exporter:9419"}}]}
      - {eval_time: 15m, alertname: RabbitMQQueueNoConsumers, exp_alerts: [{exp_labels: {severity: warning, %[6]s}}]}
      - {eval_time: 15m, alertname: RabbitMQQueueHeadMessageOld, exp_alerts: [{exp_labels: {severity: warning, %[6]s}}]}
`, abs, probe, queue, exporterJob,
		fmt.Sprintf(`job: %q, instance: %q`, probeJob, target),
		fmt.Sprintf(`job: %q, instance: %q, host: %q, vhost: "/", name: "orders"`, probeJob, target, host))
	file := filepath.Join(dir, "recipe_test.yml")
	if err := os.WriteFile(file, []byte(tests), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, dir, pt, "test", "rules", file)
}
