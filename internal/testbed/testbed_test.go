package testbed

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// populate fills a fresh vhost whose name needs escaping everywhere with one queue of
// each kind and checks the management API reports the expected counts.
func populate(t *testing.T, b Broker) {
	vhost := UniqueName("it with space/ünï-")
	b.CreateVhost(t, vhost)
	conn := b.Dial(t, vhost)

	type want struct {
		kind                     string
		publish, hold            int
		messages, ready, unacked int64
	}
	cases := []want{
		{kind: Classic, publish: 5, hold: 2, messages: 5, ready: 3, unacked: 2},
		{kind: Quorum, publish: 7, hold: 3, messages: 7, ready: 4, unacked: 3},
		// Streams never remove messages and report no unacked count of their own.
		{kind: Stream, publish: 4, messages: 4, ready: 4, unacked: 0},
	}
	names := map[string]string{}
	for _, c := range cases {
		name := UniqueName("q " + c.kind + "/é-")
		names[c.kind] = name
		b.DeclareQueue(t, conn, name, c.kind)
		b.Publish(t, conn, name, c.publish)
		if c.hold > 0 {
			b.HoldUnacked(t, conn, name, c.hold)
		}
	}
	for _, c := range cases {
		b.WaitForQueueListed(t, vhost, names[c.kind], Patience)
		b.WaitForCounts(t, vhost, names[c.kind], c.messages, c.ready, c.unacked, Patience)
	}
}

func TestPrimaryPopulation(t *testing.T) {
	populate(t, Primary(t))
}

func TestSecondPopulation(t *testing.T) {
	b := Second(t)
	guest := b
	guest.User, guest.Password = "guest", "guest"
	if code, body := guest.API(t, http.MethodGet, "/api/overview", nil); code != http.StatusUnauthorized {
		t.Fatalf("guest/guest on the second node: HTTP %d, want 401: %s", code, snippet(body))
	}
	populate(t, b)
}

func TestUniqueName(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		n := UniqueName("p-")
		if !strings.HasPrefix(n, "p-") || len(n) != len("p-")+10 || seen[n] {
			t.Fatalf("UniqueName: %q (seen before: %v)", n, seen[n])
		}
		seen[n] = true
	}
}

func TestRepoRoot(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "scripts", "testbed.sh")); err != nil {
		t.Fatalf("RepoRoot %s: %v", root, err)
	}
}

// TestProcessLock: two processLock values on the same file behave like two
// processes (flock locks belong to open file descriptions): shared uses
// coexist, exclusive use waits for them, and a wait gives up at its cap.
func TestProcessLock(t *testing.T) {
	dir := t.TempDir()
	newLock := func(wait time.Duration) *processLock {
		return &processLock{name: "lock", what: "the brokers", dir: dir, wait: wait}
	}
	a, b := newLock(time.Minute), newLock(time.Minute)
	a.hold(t, false)
	a.hold(t, false) // once per process
	b.hold(t, false)
	if a.heldExclusive() || b.heldExclusive() {
		t.Fatal("shared use reported as exclusive")
	}

	c := newLock(time.Minute)
	granted := make(chan time.Time, 1)
	go t.Run("exclusive", func(t *testing.T) {
		c.hold(t, true)
		granted <- time.Now()
	})
	time.Sleep(300 * time.Millisecond)
	select {
	case <-granted:
		t.Fatal("exclusive use granted while shared uses remain")
	default:
	}
	released := time.Now()
	for _, l := range []*processLock{a, b} {
		_ = l.f.Close() // what the process's exit does
	}
	if g := <-granted; g.Before(released) || !c.heldExclusive() {
		t.Fatal("exclusive use not granted after the shared uses ended")
	}

	d := newLock(500 * time.Millisecond)
	var failed bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		ft := &fatalRecorder{TB: t}
		defer func() { failed = ft.failed; _ = recover() }()
		d.hold(ft, false)
	}()
	<-done
	if !failed {
		t.Fatal("a wait beyond its cap did not fail")
	}
}

// fatalRecorder turns Fatalf into a recorded failure and a panic the caller
// recovers, so a test can check that a helper gives up.
type fatalRecorder struct {
	testing.TB
	failed bool
}

func (f *fatalRecorder) Fatalf(string, ...any) { f.failed = true; panic("fatal") }
func (f *fatalRecorder) Helper()               {}
func (f *fatalRecorder) Logf(string, ...any)   {}

// TestFaultStopStartSecond exercises the recovery helpers; it costs one node boot.
func TestFaultStopStartSecond(t *testing.T) {
	RequireFaults(t, SecondNode)
	b := Second(t)
	StopSecond(t)
	if err := b.ready(); err == nil {
		t.Fatal("second node still answers after StopSecond")
	}
	StartSecond(t)
	if err := b.ready(); err != nil {
		t.Fatalf("second node not ready after StartSecond: %v", err)
	}
}

// TestTurnHolders: a helper that stops a broker set accepts the test holding
// the set and its subtests, and no other test or set.
func TestTurnHolders(t *testing.T) {
	setHolder(TestCluster, "TestFaultX")
	t.Cleanup(func() { setHolder(TestCluster, "") })
	for _, c := range []struct {
		name string
		set  Brokers
		want bool
	}{
		{"TestFaultX", TestCluster, true},
		{"TestFaultX/member_4", TestCluster, true},
		{"TestFaultXY", TestCluster, false},
		{"TestFaultY", TestCluster, false},
		{"TestFaultX", SecondNode, false},
		{"TestFaultX", NamespacedCluster, false},
	} {
		if got := holds(c.name, c.set); got != c.want {
			t.Errorf("holds(%q, %v) = %v, want %v", c.name, c.set, got, c.want)
		}
	}
}
