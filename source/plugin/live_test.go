package plugin

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/testbed"
)

var record = flag.Bool("plugin.record", false, "write the live answers to testdata/single-VERSION-*.{prom,json}")

// primaryPluginURL is the primary broker's rabbitmq_prometheus listener.
const primaryPluginURL = "http://127.0.0.1:15692"

// oddNames are queue names that stress label reading but are unambiguous in
// both modes. RabbitMQ strips CR and LF from names declared over AMQP 0-9-1
// (rabbit_channel:strip_cr_lf), so raw line feeds cannot be declared here;
// the table tests cover them.
var oddNames = []string{
	"plain",
	`q "double" quotes`,
	`back\slash`,
	`\n as text`,
	`\"looks escaped\"`,
	`ends with a backslash\`,
	`x"} 5 closes early`,
	"trailing space ",
	"tab\there",
	"ünïcødé ☃",
	"ctl\x01byte",
	"{braces}=,",
	`rabbitmq_detailed_queue_messages{vhost="/`,
}

// TestLiveDifferential declares odd queues in two vhosts (one plain, one
// whose name has a quote and a backslash) on the primary broker, and checks
// that the plugin's answer parses to exactly the counts the management
// listing gives. With -plugin.record it also saves both answers as
// fixtures. A hostile queue in a third vhost must make the answer ambiguous.
func TestLiveDifferential(t *testing.T) {
	b := testbed.Primary(t)
	if err := pluginReachable(); err != nil {
		t.Fatalf("rabbitmq_prometheus is not reachable on the primary broker (%v); scripts/testbed.sh enables it", err)
	}
	plain := testbed.UniqueName("promplugin-")
	odd := testbed.UniqueName(`promplugin "odd" \ `)
	for _, vh := range []string{plain, odd} {
		b.CreateVhost(t, vh)
		conn := b.Dial(t, vh)
		for i, name := range oddNames {
			kind := testbed.Classic
			if i%3 == 1 {
				kind = testbed.Quorum
			}
			b.DeclareQueue(t, conn, name, kind)
			if n := i % 4; n > 0 {
				b.Publish(t, conn, name, n+1)
				if n == 3 {
					b.HoldUnacked(t, conn, name, 2)
				}
			}
		}
	}
	vhosts := []string{plain, odd}
	var prom, listing []byte
	var want, got map[sample]int64
	var res Result
	var err error
	// Both sources refresh their counts every few seconds: wait until they agree.
	deadline := time.Now().Add(testbed.Patience)
	for {
		listing = managementListing(t, b, vhosts)
		prom = pluginAnswer(t, vhosts)
		want = managementSamples(t, listing)
		got, res, err = pluginSamples(t, prom)
		if err != nil {
			t.Fatalf("Parse: %v\n%s", err, prom)
		}
		if equalSamples(got, want) && len(want) == 3*2*len(oddNames) && !missesCounts(want, vhosts) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugin and management listing still disagree after %v:\n%s", testbed.Patience, diffSamples(got, want))
		}
		time.Sleep(time.Second)
	}
	if res.Mode != ModeRaw && strings.HasPrefix(res.RabbitMQVersion, "3.10.") {
		t.Errorf("mode %v for %s, want raw", res.Mode, res.RabbitMQVersion)
	}
	if res.Queues != 2*len(oddNames) || res.Samples != 3*2*len(oddNames) {
		t.Errorf("result %+v: want %d queues, %d samples", res, 2*len(oddNames), 3*2*len(oddNames))
	}
	if *record {
		writeFixture(t, "single-"+res.RabbitMQVersion+"-odd", prom, listing)
	}

	// One hostile name makes the whole answer unusable in raw mode.
	hostile := testbed.UniqueName("promplugin-hostile-")
	b.CreateVhost(t, hostile)
	conn := b.Dial(t, hostile)
	b.DeclareQueue(t, conn, `a",queue="b`, testbed.Classic)
	b.DeclareQueue(t, conn, "innocent", testbed.Classic)
	deadline = time.Now().Add(testbed.Patience)
	for {
		prom = pluginAnswer(t, []string{hostile})
		if strings.Count(string(prom), "innocent") == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the plugin does not list the hostile vhost's queues after %v:\n%s", testbed.Patience, prom)
		}
		time.Sleep(time.Second)
	}
	mode, version := res.Mode, res.RabbitMQVersion
	_, _, err = pluginSamples(t, prom)
	if mode == ModeEscaped {
		// Escaped versions read it fine; only raw ones must refuse.
		if err != nil {
			t.Fatalf("Parse of an escaped answer: %v", err)
		}
		return
	}
	if !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("Parse of a raw answer with a hostile name: err %v, want ErrAmbiguous", err)
	}
	t.Logf("hostile name refused: %v", err)
	if *record {
		writeFixture(t, "single-"+version+"-ambiguous", prom, managementListing(t, b, []string{hostile}))
	}
}

// missesCounts reports a queue of vhosts without all three counts, as
// listed before the broker's first statistics round.
func missesCounts(m map[sample]int64, vhosts []string) bool {
	n := 0
	for k := range m {
		for _, v := range vhosts {
			if k.vhost == v {
				n++
			}
		}
	}
	return n != 3*len(vhosts)*len(oddNames)
}

func pluginReachable() error {
	resp, err := http.Get(primaryPluginURL + "/metrics/detailed?family=none")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}

// pluginAnswer asks the primary broker's plugin for the vhosts' queues.
func pluginAnswer(t *testing.T, vhosts []string) []byte {
	t.Helper()
	q := url.Values{"family": {"queue_coarse_metrics"}, "vhost": vhosts}
	resp, err := http.Get(primaryPluginURL + "/metrics/detailed?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("plugin answer: HTTP %d, %v", resp.StatusCode, err)
	}
	return body
}

// managementListing is the exporter's listing request, per vhost, joined
// into one array.
func managementListing(t *testing.T, b testbed.Broker, vhosts []string) []byte {
	t.Helper()
	var items []string
	for _, vh := range vhosts {
		code, body := b.API(t, http.MethodGet, "/api/queues/"+url.PathEscape(vh)+
			"?columns=name,vhost,messages,messages_ready,messages_unacknowledged&disable_stats=true&enable_queue_totals=true", nil)
		s := strings.TrimSpace(string(body))
		if code != http.StatusOK || len(s) < 2 || s[0] != '[' {
			t.Fatalf("listing %q: HTTP %d: %s", vh, code, body)
		}
		if inner := s[1 : len(s)-1]; inner != "" {
			items = append(items, inner)
		}
	}
	return []byte("[" + strings.Join(items, ",") + "]")
}

func writeFixture(t *testing.T, base string, prom, listing []byte) {
	t.Helper()
	for ext, data := range map[string][]byte{".prom": prom, ".json": listing} {
		path := filepath.Join("testdata", base+ext)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("recorded %s (%d bytes)", path, len(data))
	}
}
