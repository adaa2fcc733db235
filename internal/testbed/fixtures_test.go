package testbed

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestFaultPluginFixtures records real answers of the test cluster for parser and queueset
// tests: each member's queue_coarse_metrics answer, the management queue listing and
// /api/nodes taken at the same moment, with queue names that need escaping, then the
// same with rabbit4's application stopped. By default it records into a temporary
// directory and checks that the committed files in source/plugin/testdata still say the
// same (queue samples, counts, members; not timings or ids). With
// RECORD_PLUGIN_FIXTURES set to a directory it writes the files there instead:
//
//	RECORD_PLUGIN_FIXTURES=$PWD/source/plugin/testdata go test -count=1 -run PluginFixtures ./internal/testbed/
//
// Names are fixed, so recording again on another RabbitMQ version gives comparable
// files (the version is part of each file name). Since it stops and starts rabbit4
// anyway, it also checks what StopMember and StartMember promise.
func TestFaultPluginFixtures(t *testing.T) {
	RequireFaults(t, TestCluster)
	dir, record := os.Getenv("RECORD_PLUGIN_FIXTURES"), true
	if dir == "" {
		dir, record = t.TempDir(), false
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	committed := filepath.Join(root, "source", "plugin", "testdata")
	c := Cluster(t)
	seed := c.Members[0]
	version := brokerVersion(t, seed)
	if !record {
		if _, err := os.Stat(filepath.Join(committed, fmt.Sprintf("cluster-%s-nodes.json", version))); err != nil {
			t.Skipf("no fixtures committed for RabbitMQ %s; record them with RECORD_PLUGIN_FIXTURES", version)
		}
	}
	// Which member becomes the quorum queue's leader when rabbit4 stops varies, so the
	// answers of the remaining members are compared together.
	var gotStopped, wantStopped []byte
	write := func(name string, data []byte) {
		t.Helper()
		name = fmt.Sprintf("cluster-%s-%s", version, name)
		if !record {
			want, err := os.ReadFile(filepath.Join(committed, name))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(name, "-stopped-rabbit") {
				gotStopped, wantStopped = append(gotStopped, data...), append(wantStopped, want...)
				return
			}
			if diff := fixtureDiff(name, data, want); diff != "" {
				t.Errorf("source/plugin/testdata/%s no longer matches the broker (re-record with RECORD_PLUGIN_FIXTURES): %s", name, diff)
			}
			return
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", path, len(data))
	}

	// queue is one fixture queue: declared on member (classic) or led by it
	// (quorum, stream), holding publish messages of which hold are unacked.
	type queue struct {
		vhost, name, kind string
		member            int
		publish, hold     int
		viaHTTP           bool // AMQP refuses the name (invalid UTF-8)
	}
	const plainVhost, oddVhost = "fixtures", `odd "vhost"\ ü`
	var queues []queue
	for _, m := range ClusterMembers {
		p := fmt.Sprintf("m%d ", m)
		queues = append(queues,
			queue{vhost: plainVhost, name: p + "plain", publish: m, hold: 1},
			queue{vhost: plainVhost, name: p + `q "quoted"`, publish: 2},
			queue{vhost: plainVhost, name: p + `back\slash`, publish: 1},
			queue{vhost: plainVhost, name: p + `trailing\`},
			queue{vhost: plainVhost, name: p + "with  spaces "},
			queue{vhost: plainVhost, name: p + "ünïcödé ✓ 🐇", publish: 3, hold: 2},
			queue{vhost: plainVhost, name: p + `x",queue="evil`, publish: 1},
			queue{vhost: plainVhost, name: p + "new\nline"}, // RabbitMQ strips CR and LF
			queue{vhost: plainVhost, name: p + "tab\there"},
			queue{vhost: plainVhost, name: p + "nul\x00byte", publish: 1},
			queue{vhost: plainVhost, name: p + "bad\xffutf8", viaHTTP: true},
			queue{vhost: oddVhost, name: p + "in odd vhost", publish: 2, hold: 1},
		)
		for i := range queues {
			if queues[i].member == 0 {
				queues[i].member, queues[i].kind = m, Classic
			}
		}
	}
	queues = append(queues,
		queue{vhost: plainVhost, name: `quorum "q" ü`, kind: Quorum, member: 4, publish: 4, hold: 1},
		queue{vhost: plainVhost, name: "stream ü", kind: Stream, member: 5, publish: 3},
	)

	for _, v := range []string{plainVhost, oddVhost} {
		seed.DeleteVhost(t, v) // leftovers of an interrupted run
		seed.CreateVhost(t, v)
	}
	for _, q := range queues {
		m := c.Member(q.member)
		if q.viaHTTP {
			m.mustAPI(t, http.MethodPut, queuePath(q.vhost, q.name), map[string]any{"durable": true},
				http.StatusCreated, http.StatusNoContent)
			continue
		}
		var conn *amqp.Connection
		if q.kind == Classic {
			conn = m.DeclareClassic(t, q.vhost, q.name)
		} else {
			conn = m.DeclareReplicated(t, c, q.vhost, q.name, q.kind)
		}
		if q.publish > 0 {
			m.Publish(t, conn, q.name, q.publish)
		}
		if q.hold > 0 {
			m.HoldUnacked(t, conn, q.name, q.hold)
		}
	}

	// The management API strips CR and LF from names; look queues up by what it kept.
	stored := func(name string) string { return strings.NewReplacer("\r", "", "\n", "").Replace(name) }
	settled := func(plugin map[int][]byte, listing []byte) string {
		var rows []struct {
			Vhost    string `json:"vhost"`
			Name     string `json:"name"`
			Messages *int64 `json:"messages"`
			Ready    *int64 `json:"messages_ready"`
			Unacked  *int64 `json:"messages_unacknowledged"`
		}
		if err := json.Unmarshal(listing, &rows); err != nil {
			return err.Error()
		}
		for _, q := range queues {
			if q.viaHTTP {
				continue // its name is not valid UTF-8; the JSON listing shows U+FFFD
			}
			want := [3]int64{int64(q.publish), int64(q.publish - q.hold), int64(q.hold)}
			found := false
			for _, r := range rows {
				if r.Vhost == q.vhost && r.Name == stored(q.name) {
					// With disable_stats=true 3.10.8 lists streams without counts.
					found = q.kind == Stream || r.Messages != nil && r.Ready != nil && r.Unacked != nil &&
						[3]int64{*r.Messages, *r.Ready, *r.Unacked} == want
				}
			}
			if !found {
				return fmt.Sprintf("management: %q not yet at %v", q.name, want)
			}
			line := fmt.Sprintf("rabbitmq_detailed_queue_messages{vhost=\"%s\",queue=\"%s\"} %d\n",
				q.vhost, stored(q.name), q.publish)
			escaped := fmt.Sprintf("rabbitmq_detailed_queue_messages{vhost=%q,queue=%q} %d\n",
				q.vhost, stored(q.name), q.publish)
			body := plugin[q.member]
			if !bytes.Contains(body, []byte(line)) && !bytes.Contains(body, []byte(escaped)) {
				return fmt.Sprintf("plugin of rabbit%d: %q not yet at %d", q.member, q.name, q.publish)
			}
		}
		return ""
	}
	const listingPath = "/api/queues?columns=name,vhost,messages,messages_ready,messages_unacknowledged" +
		"&disable_stats=true&enable_queue_totals=true"
	snapshot := func(members []Member) (map[int][]byte, []byte, []byte) {
		plugin := map[int][]byte{}
		for _, m := range members {
			plugin[m.Index] = m.Scrape(t, coarsePath)
		}
		listing := members[0].mustAPI(t, http.MethodGet, listingPath, nil, http.StatusOK)
		nodes := members[0].mustAPI(t, http.MethodGet, "/api/nodes?columns=name,running,contexts", nil, http.StatusOK)
		return plugin, listing, nodes
	}
	var (
		plugin          map[int][]byte
		listing, nodes  []byte
		nodesWithPlugin = func(data []byte) bool {
			var list []NodeInfo
			if json.Unmarshal(data, &list) != nil || len(list) != len(c.Members) {
				return false
			}
			for _, n := range list {
				if !n.Running || n.Plugin() == nil {
					return false
				}
			}
			return true
		}
	)
	WaitFor(t, "the fixture counts to settle in the management listing and every plugin", Patience, func() error {
		plugin, listing, nodes = snapshot(c.Members)
		if problem := settled(plugin, listing); problem != "" {
			return errors.New(problem)
		}
		if !nodesWithPlugin(nodes) {
			return errors.New("a member without its prometheus context")
		}
		return nil
	})
	for i, body := range plugin {
		write(fmt.Sprintf("rabbit%d.txt", i), body)
	}
	write("queues.json", listing)
	write("nodes.json", nodes)
	write("rabbit3-no-family.txt", seed.Scrape(t, "/metrics/detailed"))
	write("rabbit3-unknown-family.txt", seed.Scrape(t, "/metrics/detailed?family=no_such_family"))
	write("rabbit3-vhost-filter.txt", seed.Scrape(t, coarsePath+"&vhost="+url.QueryEscape(oddVhost)))

	// rabbit4 stopped: its classic queues vanish from every answer, the quorum
	// queue it led gets a new leader that reports it after a tick.
	StopMember(t, 4)
	others := []Member{c.Member(3), c.Member(5)}
	stopped := c.Member(4)
	// What StopMember promises: the others list it, not running; its plugin
	// listener is closed.
	for _, o := range others {
		if n := o.Nodes(t)[stopped.Node]; n.Name != stopped.Node || n.Running {
			t.Errorf("%s after StopMember(4): %+v, want listed and not running", o.Node, n)
		}
	}
	if err := stopped.pluginListening(); err == nil {
		t.Errorf("%s plugin still listening after stop_app", stopped.Node)
	}
	quorumLine := []byte("rabbitmq_detailed_queue_messages{vhost=\"fixtures\",queue=")
	WaitFor(t, "exactly one member to report the quorum queue after its leader stopped", Patience, func() error {
		plugin, listing, nodes = snapshot(others)
		n := 0
		for _, body := range plugin {
			n += bytes.Count(body, append(quorumLine, []byte("\"quorum ")...))
		}
		if n != 1 {
			return fmt.Errorf("quorum queue reported by %d members", n)
		}
		return nil
	})
	for i, body := range plugin {
		write(fmt.Sprintf("rabbit4-stopped-rabbit%d.txt", i), body)
	}
	write("rabbit4-stopped-queues.json", listing)
	write("rabbit4-stopped-nodes.json", nodes)
	if diff := fixtureDiff("stopped.txt", gotStopped, wantStopped); !record && diff != "" {
		t.Errorf("source/plugin/testdata/cluster-%s-rabbit4-stopped-rabbit{3,5}.txt together no longer match the broker: %s", version, diff)
	}

	// What StartMember promises: every member lists it running, its plugin
	// listens again.
	StartMember(t, 4)
	for _, o := range c.Members {
		if n := o.Nodes(t)[stopped.Node]; !n.Running {
			t.Errorf("%s after StartMember(4): %+v, want running", o.Node, n)
		}
	}
	if err := stopped.pluginListening(); err != nil {
		t.Errorf("%s plugin not listening after StartMember: %v", stopped.Node, err)
	}
}

func brokerVersion(t testing.TB, b Member) string {
	t.Helper()
	var o struct {
		Version string `json:"rabbitmq_version"`
	}
	if err := json.Unmarshal(b.mustAPI(t, http.MethodGet, "/api/overview", nil, http.StatusOK), &o); err != nil || o.Version == "" {
		t.Fatalf("testbed: no rabbitmq_version in /api/overview: %v", err)
	}
	return o.Version
}

// fixtureDiff compares a fresh answer with a committed one by what the fixtures are
// for, ignoring what changes between runs (reductions, scrape timings, the cluster's
// permanent id, stats fields); "" means they agree.
func fixtureDiff(name string, got, want []byte) string {
	var g, w []string
	switch {
	case strings.HasSuffix(name, "nodes.json"):
		g, w = nodeSummary(got), nodeSummary(want)
	case strings.HasSuffix(name, ".json"):
		g, w = jsonRows(got), jsonRows(want)
	default:
		g, w = sampleLines(got), sampleLines(want)
	}
	if slices.Equal(g, w) {
		return ""
	}
	return fmt.Sprintf("got %q, want %q", g, w)
}

// fixtureVhosts are the vhosts the fixtures record; other tests' queues in
// other vhosts of the shared cluster are not compared.
var fixtureVhosts = []string{"fixtures", `odd "vhost"\ ü`}

// sampleLines: the sorted queue count samples (of the fixture vhosts) and build
// info of a plugin answer.
func sampleLines(body []byte) []string {
	var out []string
	for line := range strings.SplitSeq(string(body), "\n") {
		ours := strings.HasPrefix(line, "rabbitmq_build_info{") || strings.HasPrefix(line, "# TYPE rabbitmq_detailed_")
		for _, v := range fixtureVhosts {
			ours = ours || strings.HasPrefix(line, "rabbitmq_detailed_queue_messages") && strings.Contains(line, `{vhost="`+v+`",queue=`)
		}
		if ours {
			out = append(out, line)
		}
	}
	slices.Sort(out)
	return out
}

// jsonRows: the rows of a JSON array, each re-encoded (sorted keys), sorted.
func jsonRows(data []byte) []string {
	var rows []map[string]any
	if err := json.Unmarshal(data, &rows); err != nil {
		return []string{"bad JSON: " + err.Error()}
	}
	var out []string
	for _, r := range rows {
		if v, ok := r["vhost"].(string); ok && !slices.Contains(fixtureVhosts, v) {
			continue
		}
		b, _ := json.Marshal(r)
		out = append(out, string(b))
	}
	slices.Sort(out)
	return out
}

// nodeSummary: per node its name, running and prometheus listener.
func nodeSummary(data []byte) []string {
	var nodes []NodeInfo
	if err := json.Unmarshal(data, &nodes); err != nil {
		return []string{"bad JSON: " + err.Error()}
	}
	var out []string
	for _, n := range nodes {
		s := fmt.Sprintf("%s running=%v contexts=%d", n.Name, n.Running, len(n.Contexts))
		if p := n.Plugin(); p != nil {
			s += fmt.Sprintf(" plugin=%s:%s", p.Protocol, p.Port)
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}
