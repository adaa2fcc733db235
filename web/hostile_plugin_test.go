package web

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/fakeapi"
)

// TestRepeatedRowNeverPublished (issue 16, item 4): a plugin answer that
// lists a queue twice in every family, the first time with a count the
// queue does not have, is never used: the scrape reads the management
// listing, and 7777 is published nowhere.
func TestRepeatedRowNeverPublished(t *testing.T) {
	for _, style := range []fakeapi.PluginStyle{fakeapi.PluginRaw, fakeapi.PluginEscaped} {
		t.Run(string(style), func(t *testing.T) {
			a := &fakeMember{name: "rabbit@127.0.0.1", running: true, plugin: true, style: style,
				queues: []fakeapi.PluginQueue{pq("/", "victim", 7777, 0), pq("/", "other", 1, 0), pq("/", "victim", 5, 0)}}
			c := newFakeCluster(t, a)
			c.managementQueue = `[{"name":"victim","vhost":"/","messages":5,"messages_ready":5,"messages_unacknowledged":0},` +
				`{"name":"other","vhost":"/","messages":1,"messages_ready":1,"messages_unacknowledged":0}]`
			h, logs := c.handler(t, "prometheus", anyLocal)
			res := doScrape(t, h.Probe, "", nil)
			if got := res.samples[queueKey("rabbitmq_individual_queue_messages", "/", "victim")]; got != 5 {
				t.Errorf("victim = %v, want 5 (the plugin's repeated row must not be used):\n%s", got, res.body)
			}
			if strings.Contains(res.body, "7777") || !strings.Contains(res.body, `source="management"`) || res.samples["probe_success"] != 1 {
				t.Errorf("want the management listing and no 7777:\n%s", res.body)
			}
			if !strings.Contains(logs.String(), "listed twice") {
				t.Errorf("log does not say why the plugin answer was refused:\n%s", logs)
			}
		})
	}
}

// TestTenantQueuesStayInTheirScrapes (issue 16, item 6): a tenant who can
// declare queues in vhost tenant-a makes the unescaped plugin answer cost
// more than the parser's budget (labels held until the version is known)
// or read two ways. A module filtered to vhost team-b keeps reading the
// plugin; only scrapes that include tenant-a's queues fall back.
func TestTenantQueuesStayInTheirScrapes(t *testing.T) {
	var held []fakeapi.PluginQueue
	for i := range 2000 {
		held = append(held, pq("tenant-a", fmt.Sprintf("%s%06d", strings.Repeat(`\\`, 120), i), 1, 0))
	}
	for _, tc := range []struct {
		name    string
		hostile []fakeapi.PluginQueue
		vhosts  []string // more vhosts the user may read
	}{
		{"labels held over the budget", held, nil},
		// Both readings name a vhost the user may read: the vhost list
		// cannot settle it.
		{"a name that reads two ways", []fakeapi.PluginQueue{pq("tenant-a", `x",queue="y`, 1, 0)}, []string{`tenant-a",queue="x`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			queues := append(append([]fakeapi.PluginQueue{}, tc.hostile...), pq("team-b", "orders", 3, 1))
			a := &fakeMember{name: "rabbit@127.0.0.1", running: true, plugin: true, style: fakeapi.PluginRaw, queues: queues}
			c := newFakeCluster(t, a)
			c.managementQueue = `[{"name":"orders","vhost":"team-b","messages":4,"messages_ready":3,"messages_unacknowledged":1}]`
			c.extraVhosts = tc.vhosts
			user, pw := "monitor", testPassword
			u, _ := url.Parse(c.mgmt.URL)
			flags := config.EnvFlags{Host: u.Host, User: &user, Password: &pw, Source: "prometheus", AllowedTargets: anyLocal}
			for _, f := range []struct {
				include    string
				wantSource string
			}{
				{"team-b", "prometheus"},
				{"", "management"},
				{"tenant-a|team-b", "management"},
			} {
				flags.IncludeVhosts = f.include
				h, logs := newHandler(t, flags, "")
				res := doScrape(t, h.Probe, "", nil)
				if !strings.Contains(res.body, `source="`+f.wantSource+`"`) {
					t.Errorf("include_vhosts %q: want source %s:\n%.2000s\nlog:\n%.2000s", f.include, f.wantSource, res.body, logs)
				}
				if got := res.samples[queueKey("rabbitmq_individual_queue_messages", "team-b", "orders")]; got != 4 || res.samples["probe_success"] != 1 {
					t.Errorf("include_vhosts %q: team-b/orders = %v, probe_success %v", f.include, got, res.samples["probe_success"])
				}
			}
		})
	}
}
