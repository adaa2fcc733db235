package plugin

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/fakeapi"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source"
)

// TestMemberFanOutIsBounded (issue 16, item 1): what a broker lists never
// sets how many requests or bytes a listing spends.
func TestMemberFanOutIsBounded(t *testing.T) {
	t.Run("300 members naming one endpoint fail the listing with one reason", func(t *testing.T) {
		target := &fakeNode{name: "rabbit@127.0.0.1", running: true, contexts: true, queues: []fakeapi.PluginQueue{fq("/", "q", 5)}}
		b := newFakeBroker(t, target)
		for i := range 299 {
			b.nodes = append(b.nodes, &fakeNode{name: fmt.Sprintf("rabbit%d@127.0.0.1", i), running: true, contexts: true, port: target.port})
		}
		_, _, err := listWith(t, &Source{}, b, b.module(t, 0, ""), 10*time.Second, nil)
		if err == nil || !strings.Contains(err.Error(), "lists 300 members, more than the 64 one listing reads") {
			t.Fatalf("err = %v", err)
		}
		if n := target.requests.Load(); n != 0 {
			t.Errorf("%d plugin requests", n)
		}
	})
	t.Run("members naming one endpoint are read once", func(t *testing.T) {
		target := &fakeNode{name: "rabbit@127.0.0.1", running: true, contexts: true, queues: []fakeapi.PluginQueue{fq("/", "q", 5)}}
		b := newFakeBroker(t, target)
		for i := range MaxMembers - 1 {
			b.nodes = append(b.nodes, &fakeNode{name: fmt.Sprintf("rabbit%d@127.0.0.1", i), running: true, contexts: true, port: target.port})
		}
		l, _, err := listWith(t, &Source{}, b, b.module(t, 0, ""), 10*time.Second, nil)
		if err != nil {
			t.Fatal(err)
		}
		if n := target.requests.Load(); n != 1 {
			t.Errorf("%d plugin requests for %d members naming one endpoint, want 1", n, MaxMembers)
		}
		if v, _ := messages(t, l, "/", "q"); v != 5 || l.Queues.Len() != 1 || l.Queues.Duplicates() != 0 {
			t.Errorf("messages %d, %d queues, %d duplicates; want 5, 1, 0", v, l.Queues.Len(), l.Queues.Duplicates())
		}
	})
	t.Run("a worker pool reads the members", func(t *testing.T) {
		var nodes []*fakeNode
		for i := range 3 * maxParallelReads {
			// Each answer takes a while, so that the reads overlap if
			// nothing holds them back.
			nodes = append(nodes, &fakeNode{name: fmt.Sprintf("rabbit%d@127.0.0.1", i), running: true, contexts: true,
				queues: []fakeapi.PluginQueue{fq("/", fmt.Sprintf("q%d", i), int64(i))}, slow: 100 * time.Millisecond})
		}
		b := newFakeBroker(t, nodes...)
		// One count across the nodes: wrap each handler.
		var peak inflight
		for _, n := range nodes {
			n.srv.Config.Handler = peak.wrap(n.srv.Config.Handler)
		}
		l, _, err := listWith(t, &Source{}, b, b.module(t, 0, ""), 30*time.Second, nil)
		if err != nil {
			t.Fatal(err)
		}
		if l.Queues.Len() != len(nodes) {
			t.Errorf("%d queues, want %d", l.Queues.Len(), len(nodes))
		}
		if p := peak.max.Load(); p > maxParallelReads {
			t.Errorf("%d members read at once, the pool has %d workers", p, maxParallelReads)
		}
	})
	t.Run("max_response_bytes is one budget for every member", func(t *testing.T) {
		var queues []fakeapi.PluginQueue
		for i := range 200 {
			queues = append(queues, fq("/", fmt.Sprintf("queue-%04d", i), 1))
		}
		var nodes []*fakeNode
		for i := range 3 {
			nodes = append(nodes, &fakeNode{name: fmt.Sprintf("rabbit%d@127.0.0.1", i), running: true, contexts: true, queues: queues})
		}
		one := int64(len(fakeapi.RenderPlugin(fakeapi.PluginEscaped, queues, fakeapi.DefaultPluginInfo(fakeapi.PluginEscaped))))
		b := newFakeBroker(t, nodes...)
		// Each answer fits the limit; all three do not.
		_, _, err := listWith(t, &Source{}, b, b.module(t, 2*one+one/2, ""), 10*time.Second, nil)
		if !errors.Is(err, errBudget) || !strings.Contains(err.Error(), "max_response_bytes counts every member") {
			t.Fatalf("err = %v, want the listing's byte budget", err)
		}
		// Two members fit.
		b.nodes = b.nodes[:2]
		if _, _, err := listWith(t, &Source{}, b, b.module(t, 2*one+one/2, ""), 10*time.Second, nil); err != nil {
			t.Fatalf("two members within the budget: %v", err)
		}
	})
}

// TestHostileNodeNames (issue 16, item 7): a node name is name@host with a
// host name or IP literal, and the endpoint is built from its parts.
func TestHostileNodeNames(t *testing.T) {
	for _, tc := range []struct {
		node, host, err string
	}{
		{"rabbit@localhost", "localhost", ""},
		{"rabbit@Rabbit-1.example.com", "rabbit-1.example.com", ""},
		{"rabbit@10.0.0.7", "10.0.0.7", ""},
		{"rabbit@::1", "::1", ""},
		{"rabbit@[::1]", "::1", ""},
		{"rabbit_2-b.x@rmq_host", "rmq_host", ""},
		{"rabbit@evil.com/x", "", "is neither a host name nor an IP address"},
		{"rabbit@evil.com:80", "", "is neither"},
		{"rabbit@evil.com?x=1", "", "is neither"},
		{"rabbit@evil.com#x", "", "is neither"},
		{"rabbit@user@evil.com", "", "is neither"},
		{"rabbit@evil.com%2f", "", "is neither"},
		{"rabbit@evil .com", "", "is neither"},
		{"rabbit@-evil.com", "", "is neither"},
		{"rabbit@evil..com", "", "is neither"},
		{"rabbit@" + strings.Repeat("a", 64) + ".com", "", "is neither"},
		{"rabbit@exa\u3002mple.com", "", "is neither"},
		{"rabbit@fe80::1%eth0", "", "is neither"},
		{"rabbit@", "", "is not name@host"},
		{"@host", "", "is not name@host"},
		{"rabbit", "", "is not name@host"},
		{"rab/bit@host", "", "the name has"},
		{"rabbit@host\n", "", "is neither"},
	} {
		host, err := NodeHost(tc.node)
		switch {
		case tc.err == "" && (err != nil || host != tc.host):
			t.Errorf("NodeHost(%q) = %q, %v; want %q", tc.node, host, err, tc.host)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("NodeHost(%q) = %q, %v; want an error with %q", tc.node, host, err, tc.err)
		}
		if err != nil {
			continue
		}
		e, err := Endpoint("https", host, 15691)
		if err != nil || e.Hostname != host || e.Port != 15691 || e.PathPrefix != "" || e.Scheme != "https" {
			t.Errorf("Endpoint(https, %q, 15691) = %+v, %v", host, e, err)
		}
	}
	for _, tc := range []struct {
		scheme string
		port   int
	}{{"ftp", 1}, {"http", 0}, {"http", 65536}, {"", 80}} {
		if _, err := Endpoint(tc.scheme, "localhost", tc.port); err == nil {
			t.Errorf("Endpoint(%q, localhost, %d) accepted", tc.scheme, tc.port)
		}
	}

	// Through discovery: the hostile member is reported, the others read,
	// and nothing is requested anywhere else.
	good := &fakeNode{name: "rabbit@127.0.0.1", running: true, contexts: true, queues: []fakeapi.PluginQueue{fq("/", "q", 2)}}
	b := newFakeBroker(t, good)
	b.nodes = append(b.nodes, &fakeNode{name: "rabbit@127.0.0.1/metrics?x=", running: true, contexts: true, port: good.port})
	var logs bytes.Buffer
	l, _, err := listWith(t, &Source{}, b, b.module(t, 0, ""), 10*time.Second, &logs)
	if err != nil {
		t.Fatal(err)
	}
	bad, _ := memberOf(l, "rabbit@127.0.0.1/metrics?x=")
	if bad.Up || !strings.Contains(bad.Reason, "is not name@host") {
		t.Errorf("hostile member: %+v", bad)
	}
	if good.requests.Load() != 1 {
		t.Errorf("%d requests to the good member's endpoint, want 1", good.requests.Load())
	}
}

// TestSplitNeedsAFreshVhostList (issue 16, item 4): an unescaped label that
// reads two ways is settled by the vhost list only when that list was
// fetched in this scrape; a cached one is fetched again first.
func TestSplitNeedsAFreshVhostList(t *testing.T) {
	n := &fakeNode{name: "rabbit@127.0.0.1", running: true, contexts: true, raw: true,
		queues: []fakeapi.PluginQueue{fq("v", `x",queue="evil`, 7), fq("v", "plain", 5)}}
	b := newFakeBroker(t, n)
	b.vhosts = []string{"v"}
	src := &Source{}
	m := b.module(t, 0, "")
	for i := range 2 {
		l, _, err := listWith(t, src, b, m, 10*time.Second, nil)
		if err != nil {
			t.Fatalf("scrape %d: %v", i+1, err)
		}
		if v, _ := messages(t, l, "v", `x",queue="evil`); v != 7 {
			t.Fatalf("scrape %d: the odd name has %d messages, want 7", i+1, v)
		}
		if got := b.vhostsRequests.Load(); got != int32(i+1) {
			t.Errorf("scrape %d: vhost list fetched %d times, want %d (the cached list must be fetched again)", i+1, got, i+1)
		}
	}
	// A vhost created since the list was cached makes the other reading
	// possible: the answer is refused, never read with the old list.
	b.mu.Lock()
	b.vhosts = append(b.vhosts, `v",queue="x`)
	b.mu.Unlock()
	_, _, err := listWith(t, src, b, m, 10*time.Second, nil)
	if !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("err = %v, want ErrAmbiguous", err)
	}
}

// TestHungMember (issue 15, item 1): a member whose plugin accepts and never
// answers costs its own queues only. The listing ends before the scrape's
// deadline with the others' queues exact and the hung member reported as
// timed out; concurrent listings never open a second request to it; while
// the management API hangs too, the last member list is used; and all of it
// recovers when the fault ends.
func TestHungMember(t *testing.T) {
	a := &fakeNode{name: "rabbit-a@127.0.0.1", running: true, contexts: true, queues: []fakeapi.PluginQueue{fq("/", "a", 1)}}
	bn := &fakeNode{name: "rabbit-b@127.0.0.1", running: true, contexts: true, queues: []fakeapi.PluginQueue{fq("/", "b", 2)}}
	c := &fakeNode{name: "rabbit-c@127.0.0.1", running: true, contexts: true, queues: []fakeapi.PluginQueue{fq("/", "c", 3)}}
	b := newFakeBroker(t, a, bn, c)
	cluster := &Cluster{}
	src := &Source{Cluster: cluster}
	m := b.module(t, 0, "")
	const timeout = 3 * time.Second

	check := func(step string, l *source.Listing, err error, took time.Duration, hung bool) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", step, err)
			return
		}
		if took >= timeout {
			t.Errorf("%s: the listing took %v, the scrape's whole timeout", step, took)
		}
		for node, want := range map[string]int64{"/a": 1, "/b": 2} {
			if v, ok := messages(t, l, "/", node[1:]); !ok || v != want {
				t.Errorf("%s: queue %s = %d (%v), want %d", step, node, v, ok, want)
			}
		}
		st, _ := memberOf(l, c.name)
		_, listed := messages(t, l, "/", "c")
		switch {
		case hung && (st.Up || !strings.Contains(st.Reason, "timed out") || listed || l.Complete()):
			t.Errorf("%s: hung member %+v, its queue listed %v, complete %v", step, st, listed, l.Complete())
		case !hung && (!st.Up || !listed || !l.Complete()):
			t.Errorf("%s: recovered member %+v, its queue listed %v", step, st, listed)
		}
	}

	l, took, err := listWith(t, src, b, m, timeout, nil)
	check("healthy", l, err, took, false)

	c.hang.Store(true)
	l, took, err = listWith(t, src, b, m, timeout, nil)
	check("member hung, cached members", l, err, took, true)

	// The management API hangs too (a healthy member's API waits for the
	// frozen peer): the last member list serves.
	b.hangAPI.Store(true)
	var logs bytes.Buffer
	nodes := b.nodesRequests.Load()
	l, took, err = listWith(t, src, b, m, timeout, &logs)
	check("member and API hung", l, err, took, true)
	if b.nodesRequests.Load() != nodes+1 || !strings.Contains(logs.String(), "using the last member list") || !strings.Contains(logs.String(), "age=") {
		t.Errorf("want one discovery attempt and the last list used, with its age:\n%s", logs.String())
	}

	// Concurrent listings (not shared by a Lister: other modules, the
	// other plugin source) send the hung member one request at a time.
	c.inflight.max.Store(0)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			l, took, err := listWith(t, &Source{Cluster: cluster}, b, m, timeout, nil)
			check(fmt.Sprintf("concurrent %d", i), l, err, took, true)
		})
	}
	wg.Wait()
	if n := c.inflight.max.Load(); n != 1 {
		t.Errorf("%d requests in flight at once to the hung member, want 1", n)
	}

	// The last list has a bounded age.
	key := source.Key(mustTarget(t, b), m)
	cluster.mu.Lock()
	old := *cluster.cache[key]
	old.at = time.Now().Add(-maxStale - time.Second)
	cluster.cache[key] = &old
	cluster.mu.Unlock()
	if _, _, err := listWith(t, src, b, m, timeout, nil); err == nil || !strings.Contains(err.Error(), "older than 5m0s") {
		t.Errorf("a member list older than %v was used: %v", maxStale, err)
	}

	c.hang.Store(false)
	b.hangAPI.Store(false)
	l, took, err = listWith(t, src, b, m, timeout, nil)
	check("recovered", l, err, took, false)
}

// TestMemberNotReportingListeners (issue 15, item 2): a running member that
// /api/nodes lists without contexts (for some seconds after start_app) is
// read at the endpoint it reported before, or at its peers' plugin port on
// its own host, and the log says so; no "enable the plugin" advice.
func TestMemberNotReportingListeners(t *testing.T) {
	t.Run("the endpoint it reported before", func(t *testing.T) {
		a := &fakeNode{name: "rabbit-a@127.0.0.1", running: true, contexts: true, queues: []fakeapi.PluginQueue{fq("/", "a", 1)}}
		c := &fakeNode{name: "rabbit-c@127.0.0.1", running: true, contexts: true, queues: []fakeapi.PluginQueue{fq("/", "c", 3)}}
		b := newFakeBroker(t, a, c)
		src := &Source{}
		m := b.module(t, 0, "")
		if _, _, err := listWith(t, src, b, m, 10*time.Second, nil); err != nil {
			t.Fatal(err)
		}
		// Stopped (stop_app), then running without contexts (start_app).
		key := source.Key(mustTarget(t, b), m)
		b.mu.Lock()
		c.running = false
		b.mu.Unlock()
		src.cluster().markDue(key) // as after a failed member
		if l, _, err := listWith(t, src, b, m, 10*time.Second, nil); err != nil || l.Complete() {
			t.Fatalf("member stopped: %v", err)
		}
		b.mu.Lock()
		c.running, c.contexts = true, false
		b.mu.Unlock()
		var logs bytes.Buffer
		l, _, err := listWith(t, src, b, m, 10*time.Second, &logs)
		if err != nil {
			t.Fatal(err)
		}
		if st, _ := memberOf(l, c.name); !st.Up {
			t.Errorf("member without contexts: %+v", st)
		}
		if v, ok := messages(t, l, "/", "c"); !ok || v != 3 {
			t.Errorf("its queue: %d, %v", v, ok)
		}
		if !strings.Contains(logs.String(), "does not report its listeners yet") || !strings.Contains(logs.String(), guessLearned) {
			t.Errorf("log:\n%s", logs.String())
		}
	})
	t.Run("its peers' port on its own host", func(t *testing.T) {
		a := &fakeNode{name: "rabbit-a@127.0.0.1", running: true, contexts: true, queues: []fakeapi.PluginQueue{fq("/", "a", 1)}}
		b := newFakeBroker(t, a)
		// Its own address, the peers' port: where a real member listens.
		c := &fakeNode{name: "rabbit-c@127.0.0.2", running: true, queues: []fakeapi.PluginQueue{fq("/", "c", 3)}}
		b.startPlugin(c, fmt.Sprintf("127.0.0.2:%d", a.port))
		// Same host as a: the guess would be a's endpoint.
		d := &fakeNode{name: "rabbit-d@127.0.0.1", running: true, port: a.port}
		b.nodes = append(b.nodes, c, d)
		l, _, err := listWith(t, &Source{}, b, b.module(t, 0, ""), 10*time.Second, nil)
		if err != nil {
			t.Fatal(err)
		}
		if st, _ := memberOf(l, c.name); !st.Up {
			t.Errorf("member c: %+v", st)
		}
		if v, ok := messages(t, l, "/", "c"); !ok || v != 3 {
			t.Errorf("c's queue: %d, %v", v, ok)
		}
		st, _ := memberOf(l, d.name)
		if st.Up || !strings.Contains(st.Reason, "not yet reporting its listeners") || !strings.Contains(st.Reason, "another member's endpoint") || strings.Contains(st.Reason, "rabbitmq-plugins enable") {
			t.Errorf("member d: %+v", st)
		}
		if a.requests.Load() != 1 {
			t.Errorf("a's endpoint read %d times, want 1", a.requests.Load())
		}
	})
	t.Run("a guess that is not allowed is not tried", func(t *testing.T) {
		a := &fakeNode{name: "rabbit-a@127.0.0.1", running: true, contexts: true, queues: []fakeapi.PluginQueue{fq("/", "a", 1)}}
		b := newFakeBroker(t, a)
		c := &fakeNode{name: "rabbit-c@127.0.0.2", running: true}
		b.startPlugin(c, fmt.Sprintf("127.0.0.2:%d", a.port))
		b.nodes = append(b.nodes, c)
		l, _, err := listWith(t, &Source{}, b, b.module(t, 0, `127\.0\.0\.1:\d+`), 10*time.Second, nil)
		if err != nil {
			t.Fatal(err)
		}
		if st, _ := memberOf(l, c.name); st.Up || !strings.Contains(st.Reason, "not allowed") || c.requests.Load() != 0 {
			t.Errorf("member c: %+v, %d requests", st, c.requests.Load())
		}
	})
}

// TestMembershipChangesNoticed (issue 15, item 2): a member that moves to
// another port is read there from the scrape after the one where it failed;
// one that leaves the cluster is gone once the cached list expires.
func TestMembershipChangesNoticed(t *testing.T) {
	a := &fakeNode{name: "rabbit-a@127.0.0.1", running: true, contexts: true, queues: []fakeapi.PluginQueue{fq("/", "a", 1)}}
	c := &fakeNode{name: "rabbit-c@127.0.0.1", running: true, contexts: true, queues: []fakeapi.PluginQueue{fq("/", "c", 3)}}
	b := newFakeBroker(t, a, c)
	src := &Source{}
	m := b.module(t, 0, "")
	if _, _, err := listWith(t, src, b, m, 10*time.Second, nil); err != nil {
		t.Fatal(err)
	}
	// c restarts on another port.
	c.srv.Close()
	moved := &fakeNode{name: c.name, running: true, contexts: true, queues: c.queues}
	b.startPlugin(moved, "127.0.0.1:0")
	b.mu.Lock()
	b.nodes[1] = moved
	b.mu.Unlock()
	l, _, err := listWith(t, src, b, m, 10*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := memberOf(l, c.name); st.Up {
		t.Fatalf("the old endpoint answered: %+v", st)
	}
	l, _, err = listWith(t, src, b, m, 10*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := memberOf(l, c.name); !st.Up || moved.requests.Load() != 1 {
		t.Errorf("after moving: %+v, %d requests at the new port", st, moved.requests.Load())
	}
	// c leaves the cluster: noticed when the cached list expires.
	b.mu.Lock()
	b.nodes = b.nodes[:1]
	b.mu.Unlock()
	key := source.Key(mustTarget(t, b), m)
	cl := src.cluster()
	cl.mu.Lock()
	d := *cl.cache[key]
	d.at = time.Now().Add(-memberTTL)
	cl.cache[key] = &d
	cl.mu.Unlock()
	l, _, err = listWith(t, src, b, m, 10*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, listed := memberOf(l, c.name); listed || !l.Complete() {
		t.Errorf("a member that left is still listed: %+v", l.Members)
	}
}
