package plugin

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/fakeapi"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queueset"
)

// TestLabelSetOncePerBlock (issue 16, item 4): a label set listed twice in a
// family is refused even when the duplicate is in every family, where the
// sink sees one row per family at the position it expects and reports
// nothing. Built the hostile way: the second row carries other counts, so
// an exporter that took either would publish a count no queue has.
func TestLabelSetOncePerBlock(t *testing.T) {
	victim := fakeapi.PluginQueue{Vhost: "/", Name: "victim", Ready: 5, Messages: 5}
	forged := fakeapi.PluginQueue{Vhost: "/", Name: "victim", Ready: 7777, Messages: 7777}
	other := fakeapi.PluginQueue{Vhost: "/", Name: "other", Ready: 1, Messages: 1}
	// Two real queues whose unescaped labels are the same text: vhost `a`
	// with queue `b",queue="c`, and vhost `a",queue="b` with queue `c`. A
	// vhost list that names only `a` (a stale one) splits both the same way.
	sameText := []fakeapi.PluginQueue{
		{Vhost: "a", Name: `b",queue="c`, Ready: 7777, Messages: 7777},
		{Vhost: `a",queue="b`, Name: "c", Ready: 5, Messages: 5},
	}
	for _, tc := range []struct {
		name   string
		style  fakeapi.PluginStyle
		queues []fakeapi.PluginQueue
		lim    Limits
	}{
		{"raw, duplicate in every family", fakeapi.PluginRaw, []fakeapi.PluginQueue{forged, other, victim}, Limits{}},
		{"raw, duplicate adjacent", fakeapi.PluginRaw, []fakeapi.PluginQueue{forged, victim, other}, Limits{}},
		{"escaped, duplicate in every family", fakeapi.PluginEscaped, []fakeapi.PluginQueue{forged, other, victim}, Limits{}},
		{"escaped 3.13, duplicate in every family", fakeapi.PluginEscaped3, []fakeapi.PluginQueue{other, forged, victim}, Limits{}},
		{"raw, two queues with one label text, vhost list names one split", fakeapi.PluginRaw, append(sameText, other), Limits{Vhosts: map[string]bool{"a": true, "/": true}}},
		{"raw, duplicate with invalid UTF-8", fakeapi.PluginRaw, []fakeapi.PluginQueue{{Vhost: "/", Name: "v\xff", Ready: 7777}, other, {Vhost: "/", Name: "v\xff", Ready: 5}}, Limits{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := fakeapi.RenderPlugin(tc.style, tc.queues, fakeapi.DefaultPluginInfo(tc.style))
			for _, sink := range []string{"queueset", "queueset, keep all"} {
				qs := queueset.NewQueueSet("h", 0)
				var keep func(vhost, name []byte) bool
				if strings.Contains(sink, "keep") {
					keep = func(_, _ []byte) bool { return true }
				}
				_, err := Parse(bytes.NewReader(body), qs, keep, tc.lim)
				if !errors.Is(err, ErrAmbiguous) {
					got := "(not finished)"
					if err == nil {
						got = formatSamples(exposed(t, qs))
					}
					t.Fatalf("%s: err %v, want ErrAmbiguous; the exporter would publish\n%s", sink, err, got)
				}
				if !strings.Contains(err.Error(), "listed twice") {
					t.Errorf("%s: the error does not say why: %v", sink, err)
				}
			}
		})
	}
}

// TestLabelSetRepeatedAcrossBlocksAccepted: the same queue in each family
// once (what the plugin writes), and names that differ only in invalid
// UTF-8, are not repeats.
func TestLabelSetRepeatedAcrossBlocksAccepted(t *testing.T) {
	queues := append(queuesNamed("/", "a", "b\xff", "b\xfe"), queuesNamed("v", "a")...)
	for _, style := range []fakeapi.PluginStyle{fakeapi.PluginRaw, fakeapi.PluginEscaped} {
		body := fakeapi.RenderPlugin(style, queues, fakeapi.DefaultPluginInfo(style))
		r, _, err := parseRecorded(body, Limits{})
		if err != nil {
			t.Fatalf("%s: %v", style, err)
		}
		if want := truth(t, queues); !equalSamples(r.got, want) {
			t.Errorf("%s: read\n%s\nwant\n%s", style, r, formatSamples(want))
		}
	}
}
