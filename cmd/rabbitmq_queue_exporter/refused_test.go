package main

import (
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/fakeapi"
)

// TestRefusedProbesLoggedAndCounted (issue 16, item 8): at the default log
// level every refused probe leaves a trace: a log line naming target,
// module, status and reason, limited so that a scanner cannot flood the
// log, and rabbitmq_queue_exporter_probes_refused_total{reason} on
// /metrics counting every one. No secret reaches those lines.
func TestRefusedProbesLoggedAndCounted(t *testing.T) {
	const envPassword = "env-Pw-not-in-logs-71"
	const typedPassword = "typed-Pw-not-in-logs-93"
	brokers := startFakeBrokers(t, 1, fakeapi.NewHandler(smallListing(), "guest", envPassword))
	p := startExporter(t, []string{"RABBITMQ_HOST=" + brokers.target(0), "RABBITMQ_USER=guest", "RABBITMQ_PASSWORD=" + envPassword},
		"--no-metrics.queues", "--log.level=info")

	// One of each, then each line is checked.
	kinds := []struct {
		reason, query string
		status        int
		logs          []string
	}{
		{"bad_query", "targt=" + brokers.target(0), 400, []string{`status=400`, `"unknown query parameter`}},
		{"query_too_long", "target=" + strings.Repeat("a", 5000), 414, []string{`status=414`}},
		{"bad_target", "target=" + url.QueryEscape("http://guest:"+typedPassword+"@127.0.0.1:1"), 400, []string{`status=400`, `target=http://<redacted>@127.0.0.1:1`, `user information`}},
		{"bad_target", "target=" + url.QueryEscape("http://guest:"+typedPassword+"%zz@127.0.0.1:1"), 400, []string{`status=400`, `target=http://<redacted>@127.0.0.1:1`, `not a valid host`}},
		{"bad_target", "target=" + url.QueryEscape("ftp://x"), 400, []string{`status=400`, `target=ftp://x`, `not supported`}},
		{"unknown_module", "target=" + brokers.target(0) + "&auth_module=nosuch", 400, []string{`status=400`, `auth_module=nosuch`}},
		{"not_allowed", "target=127.0.0.9:15672", 403, []string{`status=403`, `target=http://127.0.0.9:15672`}},
	}
	want := map[string]int{}
	for _, k := range kinds {
		logStart := len(p.logs.String())
		res := p.get(t, "/probe?"+k.query, nil)
		if res.status != k.status {
			t.Fatalf("%s: status %d, want %d: %s", k.query, res.status, k.status, res.body)
		}
		want[k.reason]++
		line, ok := waitLogLine(p, logStart, append([]string{`level=WARN`, `msg="scrape refused"`, `reason=` + k.reason}, k.logs...))
		if !ok {
			t.Errorf("%s: no warning with %v:\n%s", k.reason, k.logs, p.logs.String()[logStart:])
		}
		t.Logf("%s: %s", k.reason, line)
	}

	// A scanner: many refused probes at once, from a few connections.
	const scans, workers = 2000, 8
	start := time.Now()
	var wg sync.WaitGroup
	client := probeClient(10 * time.Second)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < scans; i += workers {
				r := scrape(client, p, fmt.Sprintf("/probe?target=127.0.0.9:%d", 1+i), 10*time.Second, false)
				if r.status != 403 {
					t.Errorf("scan %d: %d %v", i, r.status, r.err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	want["not_allowed"] += scans
	time.Sleep(200 * time.Millisecond) // the log pipe
	lines := strings.Count(p.logs.String(), `msg="scrape refused"`)
	// 10 at once, then one a second (refusals.go).
	limit := len(kinds) + 10 + int(elapsed/time.Second) + 1
	t.Logf("%d refused probes in %v: %d log lines in all (limit %d)", scans, elapsed.Round(time.Millisecond), lines, limit)
	if lines > limit {
		t.Errorf("%d log lines for %d refused probes in %v, want at most %d", lines, scans+len(kinds), elapsed, limit)
	}

	// The next line logged says how many were left out.
	var notLogged string
	if !eventually(5*time.Second, func() bool {
		p.get(t, "/probe?target=127.0.0.9:9", nil)
		want["not_allowed"]++
		for l := range strings.SplitSeq(p.logs.String(), "\n") {
			if _, after, ok := strings.Cut(l, "not_logged="); ok {
				notLogged = after
				return true
			}
		}
		return false
	}) {
		t.Errorf("no log line says how many refusals were not logged")
	}
	t.Logf("a later line: not_logged=%s", notLogged)

	s := p.get(t, "/metrics", nil).samples(t)
	for _, reason := range []string{"bad_query", "query_too_long", "bad_target", "bad_timeout", "unknown_module", "not_allowed", "overloaded"} {
		key := fmt.Sprintf(`rabbitmq_queue_exporter_probes_refused_total{reason=%q}`, reason)
		got, ok := s[key]
		if !ok || int(got) != want[reason] {
			t.Errorf("%s = %v (present %v), want %d", key, got, ok, want[reason])
		}
	}
	for _, secret := range []string{envPassword, typedPassword} {
		if strings.Contains(p.logs.String(), secret) {
			t.Errorf("the log holds a password")
		}
	}
}
