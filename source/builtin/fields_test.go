package builtin_test

import (
	"bytes"
	"context"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/fakeapi"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/scrapetest"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source/management"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source/plugin"
)

// synthetic are rows no production code knows: adding them to a table must
// be all it takes for both sources, the fakes and the expectations to serve
// them (the one-row promise).
var synthetic = []queue.Field{
	{
		Name: "synthetic_count", Metric: "rabbitmq_individual_queue_synthetic_things",
		Help: "A count only this test knows.", Management: "synthetic_count", Stats: true,
		Group: "queue_synthetic", Plugin: "rabbitmq_detailed_queue_synthetic_count",
	},
	{
		Name: "synthetic_share", Metric: "rabbitmq_individual_queue_synthetic_share",
		Help: "A 0-1 share only this test knows.", Management: "aaa_synthetic_share", Stats: true,
		Group: queue.GroupMetrics, Plugin: "rabbitmq_detailed_queue_synthetic_share", Sparse: true, Float: true,
	},
}

// TestFieldsThroughBothSources serves fake answers generated from the field
// table and checks that each source asks for exactly the chosen columns or
// family groups and exports exactly the fakes' values.
func TestFieldsThroughBothSources(t *testing.T) {
	table := append(queue.Table(), synthetic...)
	for _, tc := range []struct {
		name   string
		fields []string
	}{
		{"default", nil},
		{"depths and consumers", []string{"messages_ready", "consumers"}},
		{"consumers alone", []string{"consumers"}},
		{"issue 14 fields", []string{"messages", "consumers", "consumer_capacity", "head_message_timestamp"}},
		{"metrics group", []string{"message_bytes", "messages_persistent", "memory"}},
		{"synthetic", []string{"messages", "synthetic_count", "synthetic_share", "head_message_timestamp"}},
		{"synthetic alone", []string{"synthetic_share"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, err := queue.Select(table, tc.fields)
			if err != nil {
				t.Fatal(err)
			}
			for _, style := range []fakeapi.PluginStyle{fakeapi.PluginRaw, fakeapi.PluginEscaped} {
				checkFields(t, fs, style)
			}
		})
	}
}

func checkFields(t *testing.T, fs queue.FieldSet, style fakeapi.PluginStyle) {
	t.Helper()
	o := fakeapi.Options{Queues: 300, Vhosts: 4, StreamEvery: 7}
	wantColumns := "name,vhost"
	for _, f := range fs {
		wantColumns += "," + f.Management
	}
	mgmt := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if r.URL.Path == "/api/vhosts" { // the plugin source's list of vhosts
			var names []string
			for v := range o.Vhosts {
				names = append(names, `{"name":"`+fakeapi.VhostName(v)+`"}`)
			}
			w.Write([]byte("[" + strings.Join(names, ",") + "]"))
			return
		}
		if r.URL.Path != "/api/queues" || q.Get("columns") != wantColumns || (q.Get("disable_stats") == "true") == fs.Stats() {
			t.Errorf("management request %s, want columns=%s and disable_stats only without statistics fields", r.URL, wantColumns)
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(fakeapi.GenerateOf(o, fs))
	}))
	defer mgmt.Close()
	pluginSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := r.URL.Query()["family"]; r.URL.Path != "/metrics/detailed" || !slices.Equal(got, fs.PluginGroups()) {
			t.Errorf("plugin request %s, want the groups %v", r.URL, fs.PluginGroups())
			http.NotFound(w, r)
			return
		}
		w.Write(fakeapi.GeneratePluginOf(o, style, fs))
	}))
	defer pluginSrv.Close()

	mu, _ := url.Parse(mgmt.URL)
	gen, err := config.Load(&config.EnvFlags{Host: mgmt.URL, AllowedTargets: `127\.0\.0\.1:[0-9]+`,
		Source: "prometheus", PluginEndpoints: pluginSrv.URL}, "", config.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	module := gen.Env
	module.Fields = fs // a custom set: Select reads only the table it is given

	want := scrapetest.Samples{}
	for i := range o.Queues {
		for _, f := range fs {
			v, ok := fakeapi.Value(o, i, f)
			if !ok {
				continue
			}
			x := float64(v)
			if f.Float {
				x = math.Float64frombits(uint64(v))
			}
			want[scrapetest.Key(f.Metric, "host", mu.Hostname(), "vhost", fakeapi.VhostName(i%o.Vhosts), "name", fakeapi.QueueName(i))] = x
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for name, src := range map[string]source.Source{"management": management.Source{}, "plugin": &plugin.Source{}} {
		l, err := src.List(ctx, gen.Target, module, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("%s (%s): %v", name, style, err)
		}
		var buf bytes.Buffer
		if _, err := l.Queues.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		// The management fake lists streams without fields (the plugin's
		// leaves them out); a queue without its head message timestamp or
		// another sparse field is not missing counts.
		wantMissing := 0
		for i := range o.Queues {
			if name == "management" && fs.Required() != 0 && !o.HasCounts(i) {
				wantMissing++
			}
		}
		if l.Queues.MissingCounts() != wantMissing {
			t.Errorf("%s (%s): %d queues missing counts, want %d", name, fs.Names(), l.Queues.MissingCounts(), wantMissing)
		}
		// promtool judges the families as written (names, HELP, values).
		got := scrapetest.Check(t, http.Header{"Content-Type": {scrapetest.TextContentType}}, buf.Bytes())
		if len(got) != len(want) {
			t.Errorf("%s (%s, %s): %d samples, want %d", name, style, fs.Names(), len(got), len(want))
		}
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				t.Errorf("%s (%s): %s = %v (present %v), want %v", name, style, k, g, ok, v)
				break
			}
		}
		for _, f := range fs {
			if !strings.Contains(buf.String(), "# HELP "+f.Metric+" "+f.Help+"\n") {
				t.Errorf("%s: no HELP line for %s", name, f.Metric)
			}
		}
	}
}
