package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/scrapetest"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/testbed"
)

const (
	diffVhost  = "it.diff10k" // kept between runs: filling it takes a minute
	diffQueues = 10000
)

// diffOddNames are queue names that test label reading in both sources. The
// plugin of 3.10 writes them unescaped; `",queue="` is left out because it
// makes a raw answer ambiguous by design (the scrape then falls back).
var diffOddNames = []string{
	`odd "double" quotes`, `back\slash`, `trailing\`, `\"both\"`, "spaces  inside and at end ",
	"ünïcödé 名前 ✓", "emoji 🐇", `braces {} = , #`, "tab\there",
}

// fillDiffVhost declares diffQueues classic queues on the seed member and the
// odd names spread over all members (each leads the queues declared through
// its AMQP listener), and publishes to some, unless a previous run already
// did. The bulk stays off the members that tests stop: a member restarting
// with thousands of classic queues takes long to recover them.
func fillDiffVhost(t *testing.T, c testbed.ClusterInfo) {
	t.Helper()
	seed := c.Members[0]
	code, body := seed.API(t, http.MethodGet, "/api/queues/"+url.PathEscape(diffVhost)+"?columns=name&disable_stats=true", nil)
	if code == http.StatusOK {
		var qs []struct{ Name string }
		if json.Unmarshal(body, &qs) == nil && len(qs) >= diffQueues+len(diffOddNames) {
			return
		}
	}
	start := time.Now()
	if code, _ := seed.API(t, http.MethodPut, "/api/vhosts/"+url.PathEscape(diffVhost), map[string]string{}); code != http.StatusCreated && code != http.StatusNoContent {
		t.Fatalf("creating vhost %s: %d", diffVhost, code)
	}
	perm := map[string]string{"configure": ".*", "write": ".*", "read": ".*"}
	seed.API(t, http.MethodPut, "/api/permissions/"+url.PathEscape(diffVhost)+"/"+testbed.ClusterUser, perm)
	perMember := make([][]string, len(c.Members))
	for i, name := range diffOddNames {
		perMember[i%len(c.Members)] = append(perMember[i%len(c.Members)], name)
	}
	for i := range diffQueues {
		perMember[0] = append(perMember[0], fmt.Sprintf("diff.queue.%05d", i))
	}
	errs := make(chan error, len(c.Members))
	for mi, m := range c.Members {
		go func() { errs <- fillFrom(m, perMember[mi]) }()
	}
	for range c.Members {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("filled %s with %d queues in %s", diffVhost, diffQueues+len(diffOddNames), time.Since(start).Round(time.Second))
}

// fillFrom declares names through member m, and publishes i%7 persistent
// messages to the i-th.
func fillFrom(m testbed.Member, names []string) error {
	u := url.URL{Scheme: "amqp", User: url.UserPassword(m.User, m.Password), Host: m.AMQPURL, Path: "/" + diffVhost}
	conn, err := amqp.DialConfig(u.String(), amqp.Config{Vhost: diffVhost, Heartbeat: 30 * time.Second})
	if err != nil {
		return fmt.Errorf("member %s: %w", m.Node, err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Confirm(false); err != nil {
		return err
	}
	// Confirms are awaited in batches: one round trip per message would
	// take minutes.
	var pending []*amqp.DeferredConfirmation
	wait := func() error {
		for _, dc := range pending {
			if !dc.Wait() {
				return fmt.Errorf("a publish on %s was nacked", m.Node)
			}
		}
		pending = pending[:0]
		return nil
	}
	for i := range names {
		if _, err := ch.QueueDeclare(names[i], true, false, false, false, amqp.Table{"x-queue-master-locator": "client-local"}); err != nil {
			return fmt.Errorf("declare %q on %s: %w", names[i], m.Node, err)
		}
		for range i % 7 {
			dc, err := ch.PublishWithDeferredConfirm("", names[i], true, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("diff")})
			if err != nil {
				return err
			}
			pending = append(pending, dc)
		}
		if len(pending) >= 500 {
			if err := wait(); err != nil {
				return err
			}
		}
	}
	return wait()
}

// TestSourcesAgreeRealCluster: on the same 10k-queue cluster, the management
// listing and the members' plugins give identical samples, odd names included.
func TestSourcesAgreeRealCluster(t *testing.T) {
	c := testbed.Cluster(t)
	fillDiffVhost(t, c)
	seedURL, _ := url.Parse(c.Members[0].MgmtURL)
	module := func(name, source string) string {
		// tls_config (for the member serving its plugin over TLS) binds the
		// credentials to TLS; the seed's plain listener is allowed by scheme.
		return fmt.Sprintf("  %s:\n    username: %s\n    password: %s\n    source: %s\n    targets: ['http://%s', 'localhost:1569[5-7]']\n    include_vhosts: '%s'\n    tls_config:\n      ca_file: %s\n",
			name, testbed.ClusterUser, testbed.ClusterPassword, source, strings.ReplaceAll(seedURL.Host, ".", `\.`), strings.ReplaceAll(diffVhost, ".", `\.`), testbed.ClusterCAFile)
	}
	cfg := filepath.Join(t.TempDir(), "config.yml")
	if err := os.WriteFile(cfg, []byte("auth_modules:\n"+module("mgmt", "management")+module("plugin", "prometheus")), 0o600); err != nil {
		t.Fatal(err)
	}
	// A loaded cluster takes minutes for what takes it 10-20 s when idle
	// (the management listing of 10k queues): the scrape and the client
	// wait up to testbed.Patience.
	p := startExporter(t, nil, "--config.file="+cfg, "--no-metrics.queues", "--probe.max-timeout="+testbed.Patience.String())
	p.client.Timeout = testbed.Patience + time.Minute
	queueSamples := func(s map[string]float64) map[string]float64 {
		out := map[string]float64{}
		for k, v := range s {
			if strings.HasPrefix(k, "rabbitmq_individual_queue_") {
				out[k] = v
			}
		}
		return out
	}
	target := "&target=" + url.QueryEscape(c.Members[0].MgmtURL)
	slow := http.Header{"X-Prometheus-Scrape-Timeout-Seconds": {strconv.Itoa(int(testbed.Patience.Seconds()))}}
	var last string
	for deadline := time.Now().Add(testbed.Patience); ; {
		mgmt := p.get(t, "/probe?auth_module=mgmt"+target, slow).samples(t)
		plugin := p.get(t, "/probe?auth_module=plugin"+target, slow).samples(t)
		a, b := queueSamples(mgmt), queueSamples(plugin)
		if want := 3 * (diffQueues + len(diffOddNames)); len(a) != want {
			t.Fatalf("management listing: %d samples, want %d", len(a), want)
		}
		last = diffSamples(a, b)
		// Other tests create vhosts with hostile names meanwhile; a plugin
		// answer read before the exporter knew such a vhost falls back once.
		if plugin[scrapetest.Key("rabbitmq_source_info", "host", "127.0.0.1", "source", "prometheus")] != 1 || plugin["probe_success"] != 1 {
			last = "the plugin source was not used"
		}
		if last == "" {
			return
		}
		// Counts settle within a stats interval after the vhost was filled.
		if time.Now().After(deadline) {
			t.Fatalf("the sources still disagree after %v: %s", testbed.Patience, last)
		}
		t.Logf("waiting for the sources to agree: %s", last)
		time.Sleep(time.Second)
	}
}

func diffSamples(a, b map[string]float64) string {
	var diffs []string
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			diffs = append(diffs, fmt.Sprintf("%s: management %v, plugin %v (present %v)", k, v, w, ok))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			diffs = append(diffs, k+" only from the plugin")
		}
	}
	if len(diffs) > 5 {
		diffs = append(diffs[:5], fmt.Sprintf("… %d more", len(diffs)-5))
	}
	return strings.Join(diffs, "; ")
}
