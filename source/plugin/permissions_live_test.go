package plugin

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/brokerhttp"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/testbed"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source/management"
)

// TestLiveVhostPermissions (issue 16, item 3): the plugin endpoint is
// node-wide and takes no credentials, yet a user limited to one of two
// vhosts sees the same queues through both sources: the ones in its vhost.
func TestLiveVhostPermissions(t *testing.T) {
	b := testbed.Primary(t)
	if err := pluginReachable(); err != nil {
		t.Fatalf("rabbitmq_prometheus is not reachable on the primary broker (%v)", err)
	}
	mine, theirs := testbed.UniqueName("perm-mine-"), testbed.UniqueName("perm-theirs-")
	for _, vh := range []string{mine, theirs} {
		b.CreateVhost(t, vh)
		conn := b.Dial(t, vh)
		b.DeclareQueue(t, conn, "orders", testbed.Classic)
		b.Publish(t, conn, "orders", 3)
	}
	user, password := testbed.UniqueName("perm-user-"), testbed.UniqueName("pw-")
	b.CreateUser(t, user, password, "management")
	b.Grant(t, user, mine)

	host := strings.TrimPrefix(b.MgmtURL, "http://")
	g, err := config.Load(&config.EnvFlags{Host: host, User: &user, Password: &password, Source: "prometheus",
		PluginEndpoints: primaryPluginURL, AllowedTargets: `127\.0\.0\.1:\d+`}, "", config.BuildOptions{UserAgent: "test"})
	if err != nil {
		t.Fatal(err)
	}
	module := g.Env
	target, err := brokerhttp.ParseTarget(host)
	if err != nil {
		t.Fatal(err)
	}
	listQueues := func(src source.Source) ([]string, *source.Listing) {
		t.Helper()
		var logs bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		l, err := src.List(ctx, target, module, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatalf("%T: %v\n%s", src, err, logs.String())
		}
		var buf bytes.Buffer
		if _, err := l.Queues.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		var names []string
		for line := range strings.SplitSeq(buf.String(), "\n") {
			if strings.HasPrefix(line, "rabbitmq_individual_queue_messages{") {
				names = append(names, line)
			}
		}
		slices.Sort(names)
		return names, l
	}
	want := []string{`rabbitmq_individual_queue_messages{host="127.0.0.1",name="orders",vhost="` + mine + `"} 3`}
	// The plugin's and the management API's counts refresh every few
	// seconds: wait for both to show the published messages.
	deadline := time.Now().Add(40 * time.Second)
	for {
		viaPlugin, _ := listQueues(&Source{})
		viaManagement, _ := listQueues(management.Source{})
		if slices.Equal(viaPlugin, want) && slices.Equal(viaManagement, want) {
			break
		}
		for _, got := range [][]string{viaPlugin, viaManagement} {
			for _, line := range got {
				if strings.Contains(line, theirs) {
					t.Fatalf("a queue of a vhost the user may not read is exported: %s", line)
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugin source %q, management source %q; want both %q", viaPlugin, viaManagement, want)
		}
		time.Sleep(time.Second)
	}
}
