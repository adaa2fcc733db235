package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/testbed"
)

// TestSoakShort is the CI-sized soak: internal/tools/soak drives the built
// exporter for 5 s at 50 probes/s (after a 5 s warm-up, which the RSS
// baseline needs) against 20 fake brokers (healthy, refused, 500, slow) and
// must report no error, goroutines back to the baseline and RSS growth under
// 10 %. `make soak` runs the full-length version. In the full lane only:
// it takes 15 s of the hermetic lane's minute, and its RSS and latency
// figures mean little beside other packages' tests.
func TestSoakShort(t *testing.T) {
	testbed.RequireFull(t, "a 10 s soak")
	goCmd, err := exec.LookPath("go")
	if err != nil {
		goCmd = "/usr/local/go/bin/go"
	}
	tool := filepath.Join(t.TempDir(), "soak")
	build := exec.Command(goCmd, "build", "-o", tool, "./internal/tools/soak")
	build.Dir = repoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the soak tool: %v\n%s", err, out)
	}
	p := startExporter(t, []string{"RABBITMQ_HOST=127.0.0.1:1"}, "--no-metrics.queues", `--probe.allowed-targets=127\.0\.0\.1:.*`)

	cmd := exec.Command(tool, "-exporter", p.url(""), "-rate", "50", "-duration", "5s", "-warmup", "5s", "-targets", "20", "-json")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	var rep struct {
		Load struct {
			Probes, Errors int
			Samples        []string `json:"error_samples"`
			Latency        map[string]struct {
				Count int
				P50   float64 `json:"p50_seconds"`
				P90   float64 `json:"p90_seconds"`
				P99   float64 `json:"p99_seconds"`
				Max   float64 `json:"max_seconds"`
			}
		}
		Before, After struct {
			Goroutines float64
			RSS        float64 `json:"rss_bytes"`
		}
		RSSGrowth float64 `json:"rss_growth"`
		Failures  []string
		Pass      bool
	}
	if jerr := json.Unmarshal(out, &rep); jerr != nil {
		t.Fatalf("soak report: %v (exit %v)\n%s", jerr, err, out)
	}
	for _, kind := range []string{"all", "healthy", "refused", "http-500", "slow"} {
		l := rep.Load.Latency[kind]
		t.Logf("%-9s %5d probes: p50 %6.1fms p90 %6.1fms p99 %6.1fms max %6.1fms", kind, l.Count, 1000*l.P50, 1000*l.P90, 1000*l.P99, 1000*l.Max)
	}
	t.Logf("goroutines %v -> %v, RSS %.1f -> %.1f MiB (%+.1f%%)", rep.Before.Goroutines, rep.After.Goroutines,
		rep.Before.RSS/(1<<20), rep.After.RSS/(1<<20), 100*rep.RSSGrowth)
	if err != nil || !rep.Pass {
		t.Fatalf("soak failed (exit %v): %s; errors: %s", err, strings.Join(rep.Failures, "; "), strings.Join(rep.Load.Samples, "; "))
	}
	if rep.Load.Probes < 240 || rep.Load.Errors != 0 {
		t.Errorf("%d probes with %d errors, want about 250 without error", rep.Load.Probes, rep.Load.Errors)
	}
	if rep.After.Goroutines > rep.Before.Goroutines+5 || rep.RSSGrowth >= 0.10 {
		t.Errorf("leak: goroutines %v -> %v, RSS %+.1f%%", rep.Before.Goroutines, rep.After.Goroutines, 100*rep.RSSGrowth)
	}
	if strings.Contains(strings.ToLower(p.logs.String()), "panic") {
		t.Errorf("the exporter log mentions a panic:\n%s", p.logs)
	}
}
