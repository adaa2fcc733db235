// Tests for the files under examples/ and the Docker packaging.
//
// promtool (Debian package "prometheus") is needed for the Prometheus config
// and rule tests: they are skipped without it, unless CI=true, where a missing
// promtool is a failure. Set PROMTOOL to use a promtool outside PATH.
package examples_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/testbed"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
)

// The metrics the exporter exposes, plus Prometheus' synthetic "up" and the
// Go/process collector metrics a dashboard may plot. Dashboards and alerts
// must use nothing else.
var knownMetrics = map[string]bool{
	"rabbitmq_individual_queue_messages":                true,
	"rabbitmq_individual_queue_messages_ready":          true,
	"rabbitmq_individual_queue_messages_unacknowledged": true,
	"rabbitmq_up":                        true,
	"rabbitmq_queues":                    true,
	"rabbitmq_queues_missing_counts":     true,
	"rabbitmq_queues_duplicates_dropped": true,
	"rabbitmq_node_up":                   true,
	"rabbitmq_source_info":               true,
	"probe_success":                      true,
	"probe_duration_seconds":             true,
	"rabbitmq_queue_exporter_build_info": true,
	"up":                                 true,
	// Go and process collectors.
	"go_goroutines":                        true,
	"go_threads":                           true,
	"go_info":                              true,
	"go_gc_duration_seconds":               true,
	"go_memstats_alloc_bytes":              true,
	"go_memstats_heap_inuse_bytes":         true,
	"go_memstats_sys_bytes":                true,
	"process_cpu_seconds_total":            true,
	"process_resident_memory_bytes":        true,
	"process_virtual_memory_bytes":         true,
	"process_open_fds":                     true,
	"process_max_fds":                      true,
	"process_start_time_seconds":           true,
	"process_network_receive_bytes_total":  true,
	"process_network_transmit_bytes_total": true,
}

// PromQL functions and aggregation operators (called with parentheses), plus
// the functions Grafana offers in variable queries.
var promqlFunctions = setOf(
	// aggregation operators
	"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
	"bottomk", "topk", "quantile", "limitk", "limit_ratio",
	// functions
	"abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
	"avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh",
	"count_over_time", "days_in_month", "day_of_month", "day_of_week", "day_of_year", "deg",
	"delta", "deriv", "double_exponential_smoothing", "exp", "floor", "histogram_avg",
	"histogram_count", "histogram_fraction", "histogram_quantile", "histogram_stddev",
	"histogram_stdvar", "histogram_sum", "holt_winters", "hour", "idelta", "increase", "info",
	"irate", "label_join", "label_replace", "last_over_time", "ln", "log10", "log2",
	"mad_over_time", "max_over_time", "min_over_time", "minute", "month", "pi",
	"predict_linear", "present_over_time", "quantile_over_time", "rad", "rate", "resets",
	"round", "scalar", "sgn", "sin", "sinh", "sort", "sort_by_label", "sort_by_label_desc",
	"sort_desc", "sqrt", "stddev_over_time", "stdvar_over_time", "sum_over_time", "tan",
	"tanh", "time", "timestamp", "vector", "year", "start", "end",
	// Grafana variable queries
	"label_values", "label_names", "metrics", "query_result",
)

// PromQL keywords that are not followed by parentheses (after the grouping
// clauses have been removed).
var promqlKeywords = setOf(
	"and", "or", "unless", "atan2", "bool", "offset", "by", "without", "on", "ignoring",
	"group_left", "group_right", "inf", "nan",
)

func setOf(words ...string) map[string]bool {
	m := make(map[string]bool, len(words))
	for _, w := range words {
		m[w] = true
	}
	return m
}

// ---------------------------------------------------------------- helpers

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// promtool returns the promtool binary, skipping (or failing under CI=true)
// when it is not installed.
func promtool(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PROMTOOL"); p != "" {
		return p
	}
	p, err := exec.LookPath("promtool")
	if err != nil {
		msg := "promtool not found (apt-get install prometheus, or set PROMTOOL)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// get walks nested maps/slices decoded from YAML or JSON: string elements
// index maps, int elements index slices. It returns nil when a step is missing.
func get(v any, steps ...any) any {
	for _, s := range steps {
		switch k := s.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, steps ...any) string {
	s, _ := get(v, steps...).(string)
	return s
}

func list(v any, steps ...any) []any {
	l, _ := get(v, steps...).([]any)
	return l
}

// ------------------------------------------------------- metric extraction

var (
	reString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'` + "|`[^`]*`")
	reVar      = regexp.MustCompile(`\$(?:\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*)`)
	reMatchers = regexp.MustCompile(`\{[^{}]*\}`)
	reRange    = regexp.MustCompile(`\[[^\[\]]*\]`)
	reGrouping = regexp.MustCompile(`(?i)\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	reToken    = regexp.MustCompile(`[A-Za-z0-9_:.]+`)
)

// metricNames returns the metric names an expression references, and the
// identifiers it calls as functions but PromQL does not know.
func metricNames(expr string) (metrics, badFuncs []string) {
	e := reString.ReplaceAllString(expr, `""`)
	e = reVar.ReplaceAllString(e, "")
	e = reMatchers.ReplaceAllString(e, " ")
	e = reRange.ReplaceAllString(e, " ")
	e = reGrouping.ReplaceAllString(e, " ")
	for _, loc := range reToken.FindAllStringIndex(e, -1) {
		tok := e[loc[0]:loc[1]]
		if c := tok[0]; c >= '0' && c <= '9' || c == '.' {
			continue // number or duration
		}
		rest := strings.TrimLeft(e[loc[1]:], " \t\r\n")
		if strings.HasPrefix(rest, "(") {
			if !promqlFunctions[strings.ToLower(tok)] {
				badFuncs = append(badFuncs, tok)
			}
			continue
		}
		if promqlKeywords[strings.ToLower(tok)] {
			continue
		}
		metrics = append(metrics, tok)
	}
	return metrics, badFuncs
}

func checkExpr(t *testing.T, where, expr string) {
	t.Helper()
	metrics, badFuncs := metricNames(expr)
	if len(metrics) == 0 && !strings.Contains(expr, "vector(") {
		t.Errorf("%s: no metric found in %q", where, expr)
	}
	for _, m := range metrics {
		if !knownMetrics[m] && !fieldMetric(m) {
			t.Errorf("%s: unknown metric %q in %q", where, m, expr)
		}
	}
	for _, f := range badFuncs {
		t.Errorf("%s: unknown function %q in %q", where, f, expr)
	}
}

// fieldMetric reports whether m is a per-queue field's metric (queue/fields.go).
func fieldMetric(m string) bool {
	return slices.ContainsFunc(queue.Table(), func(f queue.Field) bool { return f.Metric == m })
}

func TestMetricNamesExtraction(t *testing.T) {
	for expr, want := range map[string][]string{
		`up`: {"up"},
		`sum by (host, vhost) (rate(foo_total{a="}b", c=~"$x"}[$__rate_interval])) and on (job) bar`: {"foo_total", "bar"},
		`topk(10, rabbitmq_up{instance=~"$instance"}) > 1e3 offset 5m`:                               {"rabbitmq_up"},
		`count(a == 0) or vector(0)`:                                        {"a"},
		`deriv(x[15m]) > 0 and x > 1000 unless ignoring(name) group_left y`: {"x", "x", "y"},
		`sum(x) without (name) / on(host) group_right(vhost) z`:             {"x", "z"},
		`probe_success{job=~"a.*"} and on (job, instance) rabbitmq_up`:      {"probe_success", "rabbitmq_up"},
		`rabbitmq_queue_messages_ready`:                                     {"rabbitmq_queue_messages_ready"},
	} {
		got, bad := metricNames(expr)
		if !slices.Equal(got, want) || len(bad) > 0 {
			t.Errorf("metricNames(%q) = %q, bad funcs %q; want %q", expr, got, bad, want)
		}
	}
	if _, bad := metricNames(`nosuchfunc(up)`); !slices.Equal(bad, []string{"nosuchfunc"}) {
		t.Errorf("unknown function not reported: %q", bad)
	}
}

// ------------------------------------------------------- prometheus.yml

type scrapeConfig struct {
	JobName       string              `yaml:"job_name"`
	MetricsPath   string              `yaml:"metrics_path"`
	Params        map[string][]string `yaml:"params"`
	ScrapeTimeout string              `yaml:"scrape_timeout"`
	StaticConfigs []struct {
		Targets []string          `yaml:"targets"`
		Labels  map[string]string `yaml:"labels"`
	} `yaml:"static_configs"`
	RelabelConfigs []struct {
		SourceLabels []string `yaml:"source_labels"`
		TargetLabel  string   `yaml:"target_label"`
		Replacement  *string  `yaml:"replacement"`
		Action       string   `yaml:"action"`
	} `yaml:"relabel_configs"`
}

type promConfig struct {
	RuleFiles     []string       `yaml:"rule_files"`
	ScrapeConfigs []scrapeConfig `yaml:"scrape_configs"`
}

func TestPrometheusConfigRecipe(t *testing.T) {
	var cfg promConfig
	if err := yaml.Unmarshal(readFile(t, "prometheus.yml"), &cfg); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(cfg.RuleFiles, "alerts.yml") {
		t.Errorf("rule_files = %q, want alerts.yml", cfg.RuleFiles)
	}

	var exporterAddr string
	var probeJobs []scrapeConfig
	for _, sc := range cfg.ScrapeConfigs {
		switch sc.MetricsPath {
		case "/probe":
			probeJobs = append(probeJobs, sc)
		case "", "/metrics":
			if sc.JobName == "rabbitmq-exporter" && len(sc.StaticConfigs) == 1 && len(sc.StaticConfigs[0].Targets) == 1 {
				exporterAddr = sc.StaticConfigs[0].Targets[0]
			}
		}
	}
	if exporterAddr == "" {
		t.Fatal(`no single-target job "rabbitmq-exporter" scraping /metrics`)
	}
	if len(probeJobs) < 2 {
		t.Fatalf("want at least 2 /probe jobs, got %d", len(probeJobs))
	}
	if probeJobs[0].JobName != "rabbitmq-probe" {
		t.Errorf("first probe job is %q, want rabbitmq-probe", probeJobs[0].JobName)
	}
	modules := map[string]bool{}
	for _, sc := range probeJobs {
		if am := sc.Params["auth_module"]; len(am) != 1 {
			t.Errorf("%s: params.auth_module = %q, want one value", sc.JobName, am)
		} else {
			modules[am[0]] = true
		}
		if sc.ScrapeTimeout == "" {
			t.Errorf("%s: scrape_timeout not set", sc.JobName)
		}
		n := 0
		for _, s := range sc.StaticConfigs {
			n += len(s.Targets)
		}
		if n == 0 {
			t.Errorf("%s: no static targets", sc.JobName)
		}
		rc := sc.RelabelConfigs
		if len(rc) != 3 ||
			!slices.Equal(rc[0].SourceLabels, []string{"__address__"}) || rc[0].TargetLabel != "__param_target" ||
			!slices.Equal(rc[1].SourceLabels, []string{"__param_target"}) || rc[1].TargetLabel != "instance" ||
			rc[2].TargetLabel != "__address__" || rc[2].Replacement == nil || *rc[2].Replacement != exporterAddr {
			t.Errorf("%s: relabel_configs are not __address__->__param_target, __param_target->instance, %s->__address__", sc.JobName, exporterAddr)
		}
	}
	if len(modules) < 2 {
		t.Errorf("probe jobs should use different auth modules, got %v", modules)
	}
	// The examples show both target forms: host[:port] and URL.
	var targets []string
	for _, sc := range probeJobs {
		for _, s := range sc.StaticConfigs {
			targets = append(targets, s.Targets...)
		}
	}
	if !slices.ContainsFunc(targets, func(s string) bool { return strings.HasPrefix(s, "https://") }) ||
		!slices.ContainsFunc(targets, func(s string) bool { return !strings.Contains(s, "://") }) {
		t.Errorf("probe targets %q should show both host[:port] and https:// URL forms", targets)
	}

	// The auth modules exist in the example --config.file and allow the
	// targets they are used for (the exporter answers 403 otherwise).
	raw, err := os.ReadFile("config.yml")
	if errors.Is(err, os.ErrNotExist) {
		t.Log("examples/config.yml not present; auth module check skipped")
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		AuthModules map[string]authModule `yaml:"auth_modules"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("config.yml: %v", err)
	}
	for _, sc := range probeJobs {
		name := sc.Params["auth_module"][0]
		m, ok := doc.AuthModules[name]
		if !ok {
			t.Errorf("%s: auth_module %q is not defined in config.yml", sc.JobName, name)
			continue
		}
		for _, s := range sc.StaticConfigs {
			for _, target := range s.Targets {
				if !m.allows(target) {
					t.Errorf("%s: config.yml auth module %s (targets %q) does not allow %s (%s)",
						sc.JobName, name, m.Targets, target, hostPort(target))
				}
			}
		}
	}
}

// authModule is the part of a --config.file auth module the examples check.
type authModule struct {
	Username     string   `yaml:"username"`
	Password     string   `yaml:"password"`
	PasswordFile string   `yaml:"password_file"`
	Targets      []string `yaml:"targets"`
}

// allows reports whether a target's host:port matches one of the module's
// (anchored) target patterns, as the exporter checks it.
func (m authModule) allows(target string) bool {
	hp := hostPort(target)
	return slices.ContainsFunc(m.Targets, func(re string) bool {
		return regexp.MustCompile("^(?:" + re + ")$").MatchString(hp)
	})
}

func TestPromtoolCheckConfig(t *testing.T) {
	pt := promtool(t)
	// Relative rule_files resolve against the config file's directory.
	out := run(t, ".", pt, "check", "config", "prometheus.yml")
	if !strings.Contains(out, "1 rule files found") {
		t.Errorf("promtool did not load alerts.yml:\n%s", out)
	}
}

// ------------------------------------------------------------- alert rules

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func TestAlertRules(t *testing.T) {
	var rf ruleFile
	if err := yaml.Unmarshal(readFile(t, "alerts.yml"), &rf); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{ // alert -> minimum "for"
		"RabbitMQBrokerUnreachable":   "5m",
		"RabbitMQQueueBacklogGrowing": "",
		"RabbitMQUnackedPilingUp":     "",
		"RabbitMQQueuesMissingCounts": "15m",
		"RabbitMQExporterDown":        "",
	}
	seen := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			seen[r.Alert] = true
			checkExpr(t, "alerts.yml "+r.Alert, r.Expr)
			if f, ok := want[r.Alert]; ok && f != "" && r.For != f {
				t.Errorf("%s: for = %q, want %q", r.Alert, r.For, f)
			}
			if r.Labels["severity"] == "" {
				t.Errorf("%s: no severity label", r.Alert)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: summary and description annotations required", r.Alert)
			}
			if !strings.Contains(r.Annotations["summary"]+r.Annotations["description"], "$labels") {
				t.Errorf("%s: annotations should name the affected labels", r.Alert)
			}
		}
	}
	for a := range want {
		if !seen[a] {
			t.Errorf("alert %s missing", a)
		}
	}

	// Every alert has a test that fires it and one that does not.
	var tf struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(readFile(t, "alerts_test.yml"), &tf); err != nil {
		t.Fatal(err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tf.Tests {
		for _, at := range tc.AlertRuleTest {
			if len(at.ExpAlerts) > 0 {
				fires[at.Alertname] = true
			} else {
				quiet[at.Alertname] = true
			}
		}
	}
	for a := range seen {
		if !fires[a] || !quiet[a] {
			t.Errorf("alerts_test.yml: %s needs a firing and a non-firing test (firing %v, quiet %v)", a, fires[a], quiet[a])
		}
	}
}

func TestPromtoolRules(t *testing.T) {
	pt := promtool(t)
	run(t, ".", pt, "check", "rules", "alerts.yml")
	run(t, ".", pt, "test", "rules", "alerts_test.yml")
}

// --------------------------------------------------------------- dashboard

func loadDashboard(t *testing.T) map[string]any {
	t.Helper()
	var d map[string]any
	if err := json.Unmarshal(readFile(t, "grafana-dashboard.json"), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// walk calls fn for every map in v, recursively.
func walk(v any, fn func(map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		fn(x)
		for _, c := range x {
			walk(c, fn)
		}
	case []any:
		for _, c := range x {
			walk(c, fn)
		}
	}
}

func dashboardExprs(d map[string]any) []string {
	var exprs []string
	walk(d["panels"], func(m map[string]any) {
		if e, ok := m["expr"].(string); ok {
			exprs = append(exprs, e)
		}
	})
	return exprs
}

var reLabelValues = regexp.MustCompile(`^label_values\((?:(.+),\s*)?([A-Za-z_][A-Za-z0-9_]*)\)$`)

func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	if v, _ := d["schemaVersion"].(float64); v < 36 || v > 41 {
		t.Errorf("schemaVersion = %v, want about 39", d["schemaVersion"])
	}
	if str(d, "uid") == "" || str(d, "title") == "" {
		t.Error("dashboard needs uid and title")
	}

	// Template variables.
	vars := map[string]map[string]any{}
	for _, v := range list(d, "templating", "list") {
		m := v.(map[string]any)
		vars[str(m, "name")] = m
	}
	if ds := vars["DS_PROMETHEUS"]; ds == nil || str(ds, "type") != "datasource" || str(ds, "query") != "prometheus" {
		t.Error(`missing datasource variable DS_PROMETHEUS (type datasource, query prometheus)`)
	}
	for _, name := range []string{"instance", "host", "vhost"} {
		v := vars[name]
		if v == nil {
			t.Errorf("template variable %q missing", name)
			continue
		}
		q := str(v, "query")
		if q == "" {
			q = str(v, "query", "query")
		}
		m := reLabelValues.FindStringSubmatch(q)
		if m == nil || m[2] != name {
			t.Errorf("variable %s: query %q is not label_values(<metric>, %s)", name, q, name)
			continue
		}
		checkExpr(t, "variable "+name, m[1])
	}

	// Every data source reference goes through the variable.
	walk(d, func(m map[string]any) {
		ds, ok := m["datasource"]
		if !ok {
			return
		}
		if str(ds, "uid") == "-- Grafana --" {
			return // built-in annotations
		}
		if str(ds, "uid") != "${DS_PROMETHEUS}" || str(ds, "type") != "prometheus" {
			t.Errorf("datasource %v (in %q) is not ${DS_PROMETHEUS}", ds, str(m, "title")+str(m, "refId")+str(m, "name"))
		}
	})

	// Panels: unique ids, sane grid, queries only with known metrics.
	ids := map[float64]bool{}
	for _, p := range list(d, "panels") {
		id, _ := get(p, "id").(float64)
		if id == 0 || ids[id] {
			t.Errorf("panel %q: missing or duplicate id %v", str(p, "title"), id)
		}
		ids[id] = true
		x, _ := get(p, "gridPos", "x").(float64)
		w, _ := get(p, "gridPos", "w").(float64)
		h, _ := get(p, "gridPos", "h").(float64)
		if w <= 0 || h <= 0 || x+w > 24 {
			t.Errorf("panel %q: bad gridPos %v", str(p, "title"), get(p, "gridPos"))
		}
		if str(p, "type") != "row" && len(list(p, "targets")) == 0 {
			t.Errorf("panel %q has no queries", str(p, "title"))
		}
	}
	exprs := dashboardExprs(d)
	for _, e := range exprs {
		checkExpr(t, "dashboard", e)
	}
	all := strings.Join(exprs, "\n")
	for _, want := range []string{
		"rabbitmq_up{",     // brokers up
		"rabbitmq_queues{", // queue count per broker
		"sum by (host, vhost) (rabbitmq_individual_queue_messages{", // messages per vhost
		"topk(10, rabbitmq_individual_queue_messages_ready{",
		"topk(10, rabbitmq_individual_queue_messages_unacknowledged{",
		`name=~"$queue"`, // per-queue series
		"rabbitmq_individual_queue_consumers{",
		"time() - rabbitmq_individual_queue_head_message_timestamp_seconds{",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("dashboard has no query containing %q", want)
		}
	}
}

// TestDashboardPromQL lets promtool parse every dashboard query (Grafana
// variables replaced by plausible values) as a recording rule.
func TestDashboardPromQL(t *testing.T) {
	pt := promtool(t)
	exprs := dashboardExprs(loadDashboard(t))
	reInterval := regexp.MustCompile(`\$__(?:rate_interval|interval|range)\b|\$\{__(?:rate_interval|interval|range)\}`)
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for i, e := range exprs {
		e = reInterval.ReplaceAllString(e, "5m")
		e = reVar.ReplaceAllString(e, ".*")
		rules = append(rules, rule{Record: fmt.Sprintf("dashboard:expr_%d", i), Expr: e})
	}
	doc := map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}}
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, ".", pt, "check", "rules", f)
}

// -------------------------------------------------------------- kubernetes

func loadManifests(t *testing.T) map[string]map[string]any {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests under kubernetes/: %v", err)
	}
	byKind := map[string]map[string]any{}
	for _, f := range files {
		dec := yaml.NewDecoder(bytes.NewReader(readFile(t, f)))
		for {
			var doc map[string]any
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if doc == nil {
				continue
			}
			kind := str(doc, "kind")
			if kind == "" || str(doc, "apiVersion") == "" || str(doc, "metadata", "name") == "" {
				t.Errorf("%s: document without kind/apiVersion/metadata.name", f)
			}
			if _, dup := byKind[kind]; dup {
				t.Errorf("%s: second %s", f, kind)
			}
			byKind[kind] = doc
		}
	}
	return byKind
}

func TestKubernetesManifests(t *testing.T) {
	docs := loadManifests(t)
	wantKinds := map[string]string{
		"Deployment":     "apps/v1",
		"Service":        "v1",
		"Secret":         "v1",
		"ServiceMonitor": "monitoring.coreos.com/v1",
		"Probe":          "monitoring.coreos.com/v1",
	}
	for kind, api := range wantKinds {
		if docs[kind] == nil {
			t.Errorf("no %s", kind)
		} else if got := str(docs[kind], "apiVersion"); got != api {
			t.Errorf("%s: apiVersion %q, want %q", kind, got, api)
		}
	}
	for kind := range docs {
		if _, ok := wantKinds[kind]; !ok {
			t.Errorf("unexpected kind %s", kind)
		}
	}
	dep, svc, sec, sm, probe := docs["Deployment"], docs["Service"], docs["Secret"], docs["ServiceMonitor"], docs["Probe"]
	if dep == nil || svc == nil || sec == nil || sm == nil || probe == nil {
		t.FailNow()
	}
	ns := str(dep, "metadata", "namespace")
	for kind, d := range docs {
		if got := str(d, "metadata", "namespace"); got != ns {
			t.Errorf("%s: namespace %q, Deployment's is %q", kind, got, ns)
		}
	}

	// Deployment.
	podLabels, _ := get(dep, "spec", "template", "metadata", "labels").(map[string]any)
	if !subset(get(dep, "spec", "selector", "matchLabels"), podLabels) {
		t.Error("Deployment selector does not match the pod labels")
	}
	pod := get(dep, "spec", "template", "spec")
	if get(pod, "securityContext", "runAsNonRoot") != true {
		t.Error("pod securityContext.runAsNonRoot must be true")
	}
	containers := list(pod, "containers")
	if len(containers) != 1 {
		t.Fatalf("want 1 container, got %d", len(containers))
	}
	c := containers[0]
	if str(c, "image") == "" {
		t.Error("container image missing")
	}
	if get(c, "securityContext", "readOnlyRootFilesystem") != true ||
		get(c, "securityContext", "allowPrivilegeEscalation") != false {
		t.Error("container securityContext needs readOnlyRootFilesystem: true, allowPrivilegeEscalation: false")
	}
	if get(c, "resources", "requests") == nil || get(c, "resources", "limits") == nil {
		t.Error("container resources requests/limits missing")
	}
	portName := ""
	for _, p := range list(c, "ports") {
		if get(p, "containerPort") == 9419 {
			portName = str(p, "name")
		}
	}
	if portName == "" {
		t.Error("no named containerPort 9419")
	}
	for _, probeKind := range []string{"livenessProbe", "readinessProbe"} {
		if got := str(c, probeKind, "httpGet", "path"); got != "/-/healthy" {
			t.Errorf("%s path = %q, want /-/healthy", probeKind, got)
		}
		if p := get(c, probeKind, "httpGet", "port"); p != portName && p != 9419 {
			t.Errorf("%s port = %v, want %q or 9419", probeKind, p, portName)
		}
	}
	env := map[string]any{}
	for _, e := range list(c, "env") {
		env[str(e, "name")] = e
	}
	for _, name := range []string{"RABBITMQ_HOST", "RABBITMQ_USER", "RABBITMQ_PASSWORD_FILE"} {
		if env[name] == nil {
			t.Errorf("env %s missing", name)
		}
	}
	if env["RABBITMQ_PASSWORD"] != nil {
		t.Error("the password must come from a file (RABBITMQ_PASSWORD_FILE), not RABBITMQ_PASSWORD")
	}
	if ref := get(env["RABBITMQ_USER"], "valueFrom", "secretKeyRef"); ref != nil {
		if str(ref, "name") != str(sec, "metadata", "name") || get(sec, "stringData", str(ref, "key")) == nil {
			t.Errorf("RABBITMQ_USER refers to %v, not a key of Secret %s", ref, str(sec, "metadata", "name"))
		}
	}
	// RABBITMQ_PASSWORD_FILE must be a file of a mounted Secret volume, and
	// that file a key of secret.yaml's Secret.
	pwFile := str(env["RABBITMQ_PASSWORD_FILE"], "value")
	found := false
	for _, vm := range list(c, "volumeMounts") {
		mp := strings.TrimSuffix(str(vm, "mountPath"), "/") + "/"
		if !strings.HasPrefix(pwFile, mp) {
			continue
		}
		rel := strings.TrimPrefix(pwFile, mp)
		for _, vol := range list(pod, "volumes") {
			if str(vol, "name") != str(vm, "name") || get(vol, "secret") == nil {
				continue
			}
			if str(vol, "secret", "secretName") != str(sec, "metadata", "name") {
				t.Errorf("volume %s mounts Secret %q, secret.yaml defines %q", str(vol, "name"),
					str(vol, "secret", "secretName"), str(sec, "metadata", "name"))
			}
			key := rel
			for _, it := range list(vol, "secret", "items") {
				if str(it, "path") == rel {
					key = str(it, "key")
				}
			}
			if get(sec, "stringData", key) == nil && get(sec, "data", key) == nil {
				t.Errorf("Secret has no key %q for %s", key, pwFile)
			}
			if get(vm, "readOnly") != true {
				t.Error("secret volume should be mounted readOnly")
			}
			found = true
		}
	}
	if !found {
		t.Errorf("RABBITMQ_PASSWORD_FILE=%q is not inside a mounted Secret volume", pwFile)
	}

	// Service.
	if !subset(get(svc, "spec", "selector"), podLabels) {
		t.Error("Service selector does not match the pod labels")
	}
	svcPort := ""
	for _, p := range list(svc, "spec", "ports") {
		if get(p, "port") == 9419 {
			svcPort = str(p, "name")
		}
	}
	if svcPort == "" {
		t.Error("Service has no named port 9419")
	}

	// ServiceMonitor.
	svcLabels, _ := get(svc, "metadata", "labels").(map[string]any)
	if !subset(get(sm, "spec", "selector", "matchLabels"), svcLabels) {
		t.Error("ServiceMonitor selector does not match the Service labels")
	}
	ep := get(sm, "spec", "endpoints", 0)
	if str(ep, "port") != svcPort || str(ep, "path") != "/metrics" {
		t.Errorf("ServiceMonitor endpoint = %v, want port %q path /metrics", ep, svcPort)
	}

	// Probe.
	wantURL := fmt.Sprintf("%s.%s.svc:9419", str(svc, "metadata", "name"), ns)
	if got := str(probe, "spec", "prober", "url"); got != wantURL {
		t.Errorf("Probe prober.url = %q, want %q", got, wantURL)
	}
	if got := str(probe, "spec", "prober", "path"); got != "/probe" {
		t.Errorf("Probe prober.path = %q, want /probe", got)
	}
	if len(list(probe, "spec", "targets", "staticConfig", "static")) == 0 {
		t.Error("Probe has no static targets")
	}
	if str(probe, "spec", "scrapeTimeout") == "" {
		t.Error("Probe scrapeTimeout not set")
	}
	// spec.params (Prometheus Operator >= 0.85) is a list of {name, values}.
	hasAuth := false
	for _, p := range list(probe, "spec", "params") {
		if str(p, "name") == "auth_module" && len(list(p, "values")) > 0 {
			hasAuth = true
		}
		for k := range p.(map[string]any) {
			if k != "name" && k != "values" {
				t.Errorf("Probe params entry has unknown field %q", k)
			}
		}
	}
	if !hasAuth {
		t.Error("Probe does not pass auth_module in spec.params")
	}
	if str(probe, "spec", "module") != "" {
		t.Error("Probe spec.module would add a module= parameter the exporter does not use")
	}

	// The Probe's auth module is defined in the --config.file the Deployment
	// loads from the Secret, its password_file is a key of that Secret, and its
	// target patterns allow every probed target.
	secretFile := func(p string) (string, bool) { // file path -> Secret key
		for _, vm := range list(c, "volumeMounts") {
			mp := strings.TrimSuffix(str(vm, "mountPath"), "/") + "/"
			if rel, ok := strings.CutPrefix(p, mp); ok {
				for _, vol := range list(pod, "volumes") {
					if str(vol, "name") == str(vm, "name") && str(vol, "secret", "secretName") == str(sec, "metadata", "name") {
						return rel, true
					}
				}
			}
		}
		return "", false
	}
	cfgPath := ""
	for _, a := range list(c, "args") {
		if v, ok := strings.CutPrefix(fmt.Sprint(a), "--config.file="); ok {
			cfgPath = v
		}
	}
	key, ok := secretFile(cfgPath)
	if cfgPath == "" || !ok {
		t.Fatalf("--config.file=%q is not a file of the mounted Secret", cfgPath)
	}
	var cfg struct {
		AuthModules map[string]authModule `yaml:"auth_modules"`
	}
	if err := yaml.Unmarshal([]byte(str(sec, "stringData", key)), &cfg); err != nil || len(cfg.AuthModules) == 0 {
		t.Fatalf("Secret key %q: no auth_modules (%v)", key, err)
	}
	for name, m := range cfg.AuthModules {
		if m.PasswordFile != "" {
			if k, ok := secretFile(m.PasswordFile); !ok || get(sec, "stringData", k) == nil {
				t.Errorf("auth module %s: password_file %q is not a key of the Secret", name, m.PasswordFile)
			}
		}
	}
	for _, p := range list(probe, "spec", "params") {
		if str(p, "name") != "auth_module" {
			continue
		}
		for _, mod := range list(p, "values") {
			m, ok := cfg.AuthModules[fmt.Sprint(mod)]
			if !ok {
				t.Errorf("Probe auth_module %q is not defined in the config file", mod)
				continue
			}
			for _, target := range list(probe, "spec", "targets", "staticConfig", "static") {
				if !m.allows(fmt.Sprint(target)) {
					t.Errorf("auth module %s: targets %q do not allow %s (%s)", mod, m.Targets, target, hostPort(fmt.Sprint(target)))
				}
			}
		}
	}
}

// hostPort is host:port of a probe target, default port filled in.
func hostPort(target string) string {
	scheme, rest, ok := strings.Cut(target, "://")
	if !ok {
		scheme, rest = "http", target
	}
	host, _, _ := strings.Cut(rest, "/")
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	if scheme == "https" {
		return net.JoinHostPort(host, "15671")
	}
	return net.JoinHostPort(host, "15672")
}

// subset reports whether every key/value of sel is in labels (and sel is non-empty).
func subset(sel any, labels map[string]any) bool {
	m, ok := sel.(map[string]any)
	if !ok || len(m) == 0 {
		return false
	}
	for k, v := range m {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// ----------------------------------------------------------------- systemd

// parseUnit returns section -> key -> values (keys may repeat).
func parseUnit(t *testing.T, name string) map[string]map[string][]string {
	t.Helper()
	unit := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, name)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			unit[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: cannot parse %q", name, line)
			}
			unit[section][strings.TrimSpace(k)] = append(unit[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return unit
}

func parseEnvFile(t *testing.T, name string) map[string]string {
	t.Helper()
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, name)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || !regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`).MatchString(k) {
			t.Fatalf("%s: bad line %q", name, line)
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		env[k] = v
	}
	return env
}

func TestSystemdUnit(t *testing.T) {
	const unitFile = "systemd/rabbitmq_queue_exporter.service"
	unit := parseUnit(t, unitFile)
	svc := unit["Service"]
	if svc == nil {
		t.Fatal("no [Service] section")
	}
	execStart := strings.Fields(strings.Join(svc["ExecStart"], " "))
	if len(svc["ExecStart"]) != 1 || len(execStart) == 0 || path.Base(execStart[0]) != "rabbitmq_queue_exporter" || !path.IsAbs(execStart[0]) {
		t.Errorf("ExecStart = %q, want the absolute path of rabbitmq_queue_exporter", svc["ExecStart"])
	}
	if len(svc["EnvironmentFile"]) == 0 {
		t.Error("EnvironmentFile missing")
	}
	for k, want := range map[string]string{
		"DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
		"ProtectHome": "yes", "PrivateTmp": "yes", "Restart": "on-failure",
	} {
		if !slices.Contains(svc[k], want) {
			t.Errorf("[Service] %s=%s missing (have %q)", k, want, svc[k])
		}
	}
	if len(unit["Install"]["WantedBy"]) == 0 {
		t.Error("[Install] WantedBy missing")
	}

	env := parseEnvFile(t, "systemd/rabbitmq_queue_exporter.env")
	for _, k := range []string{"RABBITMQ_HOST", "RABBITMQ_USER", "RABBITMQ_PASSWORD_FILE"} {
		if env[k] == "" {
			t.Errorf("environment file: %s not set", k)
		}
	}
	if _, ok := env["RABBITMQ_PASSWORD"]; ok {
		t.Error("environment file must not contain RABBITMQ_PASSWORD")
	}
	// Variables used in ExecStart come from the environment file.
	for _, m := range regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)`).FindAllStringSubmatch(strings.Join(execStart, " "), -1) {
		if _, ok := env[m[1]]; !ok {
			t.Errorf("ExecStart uses $%s, not defined in the environment file", m[1])
		}
	}
	// With DynamicUser the password reaches the service as a credential.
	for _, lc := range svc["LoadCredential"] {
		id, _, _ := strings.Cut(lc, ":")
		want := "/run/credentials/" + filepath.Base(unitFile) + "/" + id
		if env["RABBITMQ_PASSWORD_FILE"] != want {
			t.Errorf("RABBITMQ_PASSWORD_FILE = %q, want %q (LoadCredential=%s)", env["RABBITMQ_PASSWORD_FILE"], want, lc)
		}
	}

	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not available; skipping systemd-analyze verify")
		return
	}
	// verify insists on an existing ExecStart binary: point it at a stub.
	dir := t.TempDir()
	stub := filepath.Join(dir, "rabbitmq_queue_exporter")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(readFile(t, unitFile)), execStart[0], stub)
	unitCopy := filepath.Join(dir, filepath.Base(unitFile))
	if err := os.WriteFile(unitCopy, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", "--man=no", unitCopy).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// ------------------------------------------------------------------ docker

// TestDockerfiles runs scripts/check-dockerfile.sh: the checks of the builds
// no test runs (Dockerfile.source, arm64) and, in the full lane only (it
// compiles the module from scratch: minutes on 2 cores), Dockerfile.source's
// builder stage in a copy of the build context. Dockerfile itself is built
// and run by cmd/rabbitmq_queue_exporter's TestContainerImage.
func TestDockerfiles(t *testing.T) {
	args := []string{filepath.Join("..", "scripts", "check-dockerfile.sh")}
	if !testbed.Full() {
		t.Logf("Dockerfile.source's builder stage is run in the full lane only (%s=1)", testbed.EnvBrokers)
		args = append(args, "--no-build")
	}
	cmd := exec.Command("bash", args...)
	cmd.Env = os.Environ()
	if os.Getenv("GO") == "" {
		if goBin, err := exec.LookPath("go"); err == nil {
			cmd.Env = append(cmd.Env, "GO="+goBin)
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("check-dockerfile.sh: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

func TestShellScripts(t *testing.T) {
	var scripts []string
	for _, s := range []string{"build.sh", "check-dockerfile.sh", "image.sh", "testbed.sh", "bench.sh", "test-deps.sh", "gen-certs.sh", "resources.sh", "test-under-load.sh", "netns-cluster.sh"} {
		scripts = append(scripts, filepath.Join("..", "scripts", s))
	}
	scripts = append(scripts, filepath.Join("..", ".ci", "run"))
	for _, s := range scripts {
		run(t, ".", "bash", "-n", s)
	}
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("shellcheck not installed (scripts/test-deps.sh installs it)")
		}
		t.Skip("shellcheck not installed")
	}
	run(t, ".", sc, scripts...)
}
