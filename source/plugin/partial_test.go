package plugin

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/fakeapi"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source/management"
)

// TestAutoServesTheMembersRead (issue 15, item 3): source auto (the strict
// plugin listing, falling back to the management listing) answers with the
// members it read when one member cannot be read and the management
// listing fails or hangs (it waits for the same member): the others'
// queues exact, the missing member not up with its reason, within the
// scrape's timeout; a complete plugin failure still falls back fully.
func TestAutoServesTheMembersRead(t *testing.T) {
	const timeout = 3 * time.Second
	for _, tc := range []struct {
		name string
		// fault breaks the cluster after a healthy listing; the fake's
		// management API serves no /api/queues, so the fallback fails
		// unless it hangs.
		fault      func(b *fakeBroker, c *fakeNode, cl *Cluster)
		wantReason string
		wantThen   string
	}{
		{
			name:       "member hangs, management listing fails",
			fault:      func(_ *fakeBroker, c *fakeNode, _ *Cluster) { c.hang.Store(true) },
			wantReason: "timed out",
			wantThen:   "404",
		},
		{
			name: "member hangs, management API hangs",
			fault: func(b *fakeBroker, c *fakeNode, cl *Cluster) {
				c.hang.Store(true)
				b.hangAPI.Store(true)
			},
			wantReason: "timed out",
			wantThen:   "share of the scrape timeout",
		},
		{
			name:       "member stopping: its plugin refuses connections",
			fault:      func(_ *fakeBroker, c *fakeNode, _ *Cluster) { c.srv.Close() },
			wantReason: "connection refused",
			wantThen:   "404",
		},
		{
			name: "member starting: listed running without listeners, none known",
			fault: func(b *fakeBroker, c *fakeNode, cl *Cluster) {
				b.mu.Lock()
				c.contexts = false
				b.mu.Unlock()
				// A new process: no endpoint it reported before is known,
				// and its peers' port on its host is theirs.
				cl.mu.Lock()
				cl.cache = nil
				cl.mu.Unlock()
			},
			wantReason: "not yet reporting its listeners",
			wantThen:   "404",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &fakeNode{name: "rabbit-a@127.0.0.1", running: true, contexts: true, queues: []fakeapi.PluginQueue{fq("/", "a", 1)}}
			bn := &fakeNode{name: "rabbit-b@127.0.0.1", running: true, contexts: true, queues: []fakeapi.PluginQueue{fq("/", "b", 2)}}
			c := &fakeNode{name: "rabbit-c@127.0.0.1", running: true, contexts: true, queues: []fakeapi.PluginQueue{fq("/", "c", 3)}}
			b := newFakeBroker(t, a, bn, c)
			cluster := &Cluster{}
			auto := source.Fallback{First: &Source{Strict: true, Cluster: cluster}, Then: management.Source{}}
			m := b.module(t, 0, "")
			if l, _, err := listAuto(t, auto, b, m, timeout, nil); err != nil || !l.Complete() || l.Source != "prometheus" {
				t.Fatalf("healthy: %+v, %v", l, err)
			}
			tc.fault(b, c, cluster)
			var logs bytes.Buffer
			l, took, err := listAuto(t, auto, b, m, timeout, &logs)
			if err != nil {
				t.Fatalf("%v\n%s", err, logs.String())
			}
			if took >= timeout {
				t.Errorf("the listing took %v, the scrape's whole timeout", took)
			}
			for name, want := range map[string]int64{"a": 1, "b": 2} {
				if v, ok := messages(t, l, "/", name); !ok || v != want {
					t.Errorf("queue %s = %d (%v), want %d", name, v, ok, want)
				}
			}
			if _, ok := messages(t, l, "/", "c"); ok {
				t.Error("the missing member's queue has a count")
			}
			st, _ := memberOf(l, c.name)
			if st.Up || !strings.Contains(st.Reason, tc.wantReason) {
				t.Errorf("missing member %+v, want a reason naming %q", st, tc.wantReason)
			}
			if l.Complete() || l.Source != "prometheus" || l.Fallback != "" || !strings.Contains(l.FallbackFailed, tc.wantThen) {
				t.Errorf("complete %v, source %s, fallback %q, fallback failed %q (want %q)", l.Complete(), l.Source, l.Fallback, l.FallbackFailed, tc.wantThen)
			}
		})
	}

	t.Run("no member read: the fallback's failure is the scrape's", func(t *testing.T) {
		a := &fakeNode{name: "rabbit-a@127.0.0.1", running: true, contexts: true, queues: []fakeapi.PluginQueue{fq("/", "a", 1)}}
		c := &fakeNode{name: "rabbit-c@127.0.0.1", running: true, contexts: true, queues: []fakeapi.PluginQueue{fq("/", "c", 3)}}
		b := newFakeBroker(t, a, c)
		auto := source.Fallback{First: &Source{Strict: true}, Then: management.Source{}}
		m := b.module(t, 0, "")
		a.srv.Close()
		c.srv.Close()
		l, _, err := listAuto(t, auto, b, m, timeout, nil)
		if err == nil || !strings.Contains(err.Error(), "falling back failed too") || !strings.Contains(err.Error(), "404") {
			t.Errorf("want the fallback's failure, got %+v, %v", l, err)
		}
	})
}

// listAuto is listWith for any source.
func listAuto(t *testing.T, src source.Source, b *fakeBroker, m *config.Module, timeout time.Duration, logs *bytes.Buffer) (*source.Listing, time.Duration, error) {
	t.Helper()
	if logs == nil {
		logs = &bytes.Buffer{}
	}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	l, err := src.List(ctx, mustTarget(t, b), m, logger)
	return l, time.Since(start), err
}
