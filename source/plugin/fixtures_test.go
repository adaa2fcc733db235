package plugin

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/fakeapi"
)

// TestFixturesMatchManagement is the differential test: every
// testdata/*.prom (a plugin answer) parses to exactly the counts its .json
// twin (the management listing of the same queues, taken at the same time)
// gives the exporter. Answers named *-ambiguous.prom must be refused.
func TestFixturesMatchManagement(t *testing.T) {
	proms, err := filepath.Glob(filepath.Join("testdata", "*.prom"))
	if err != nil || len(proms) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, path := range proms {
		t.Run(filepath.Base(path), func(t *testing.T) {
			prom, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			listing, err := os.ReadFile(strings.TrimSuffix(path, ".prom") + ".json")
			if err != nil {
				t.Skipf("no management listing beside it: %v", err)
			}
			got, res, err := pluginSamples(t, prom)
			if strings.HasSuffix(path, "-ambiguous.prom") {
				if !errors.Is(err, ErrAmbiguous) {
					t.Fatalf("err %v, want ErrAmbiguous", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := managementSamples(t, listing)
			if len(want) == 0 {
				t.Fatal("the management listing has no counts")
			}
			if d := diffSamples(got, want); d != "" {
				t.Fatalf("plugin and management listing differ:\n%s", d)
			}
			if res.RabbitMQVersion == "" || res.Node == "" || res.Mode == ModeUnknown {
				t.Errorf("result lacks the member's identity: %+v", res)
			}
			if res.Queues*3 != len(want) || res.Samples != len(want) {
				t.Errorf("result counts %d queues, %d samples; the listing has %d samples", res.Queues, res.Samples, len(want))
			}
		})
	}
}

// TestWriteEscapedFixtures re-renders the recorded 3.10.8 queues as 3.13 and
// 4.x answers (run with -plugin.record). The escaped answers follow the
// sources named in fakeapi.PluginEscaped and PluginEscaped3; the test bed
// only has 3.10.8.
func TestWriteEscapedFixtures(t *testing.T) {
	listing, err := os.ReadFile(filepath.Join("testdata", "single-3.10.8-odd.json"))
	if err != nil {
		t.Fatal(err)
	}
	var items []struct {
		Name, Vhost   string
		Messages      int64
		MessagesReady int64 `json:"messages_ready"`
		Unacked       int64 `json:"messages_unacknowledged"`
	}
	if err := json.Unmarshal(listing, &items); err != nil {
		t.Fatal(err)
	}
	var queues []fakeapi.PluginQueue
	for i, it := range items {
		queues = append(queues, fakeapi.PluginQueue{Vhost: it.Vhost, Name: it.Name, Ready: it.MessagesReady,
			Unacked: it.Unacked, Messages: it.Messages, Reductions: int64(7000 + i)})
	}
	for _, style := range []fakeapi.PluginStyle{fakeapi.PluginEscaped3, fakeapi.PluginEscaped} {
		info := fakeapi.DefaultPluginInfo(style)
		prom := fakeapi.RenderPlugin(style, queues, info)
		base := "single-" + info.RabbitMQVersion + "-odd"
		if *record {
			writeFixture(t, base, prom, listing)
			continue
		}
		// Without -plugin.record, check the committed files are current.
		old, err := os.ReadFile(filepath.Join("testdata", base+".prom"))
		if err != nil || string(old) != string(prom) {
			t.Errorf("testdata/%s.prom is not what the renderer makes now (err %v): run go test -run TestWriteEscapedFixtures -plugin.record", base, err)
		}
	}
}

// TestGeneratorsAgree: fakeapi's plugin answers describe the same queues
// and counts as its management listings, so benchmarks can compare sources.
func TestGeneratorsAgree(t *testing.T) {
	o := fakeapi.Options{Queues: 3000, Vhosts: 7, StreamEvery: fakeapi.DefaultStreamEvery}
	want := managementSamples(t, fakeapi.Generate(o))
	for _, style := range []fakeapi.PluginStyle{fakeapi.PluginRaw, fakeapi.PluginEscaped} {
		got, res, err := pluginSamples(t, fakeapi.GeneratePlugin(o, style))
		if err != nil {
			t.Fatalf("%s: %v", style, err)
		}
		if d := diffSamples(got, want); d != "" || res.Queues != 3000-3000/fakeapi.DefaultStreamEvery {
			t.Fatalf("%s: %d queues; differs from the management listing:\n%s", style, res.Queues, d)
		}
	}
}
