package testbed

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
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
		b.WaitForQueueListed(t, vhost, names[c.kind], 10*time.Second)
		b.WaitForCounts(t, vhost, names[c.kind], c.messages, c.ready, c.unacked, 15*time.Second)
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

// TestUseLock checks the shared/exclusive coordination without a broker. Two useLock
// values on the same files behave like two processes, since flock locks belong to
// open file descriptions.
func TestUseLock(t *testing.T) {
	dir := t.TempDir()
	newLock := func() *useLock {
		return &useLock{usePath: dir + "/use", intentPath: dir + "/intent", wait: 5 * time.Second}
	}
	procA, procB := newLock(), newLock()

	t.Run("upgrade own shared use", func(t *testing.T) {
		procA.acquireShared(t)
		procA.acquireShared(t) // idempotent per test
		procA.acquireExclusive(t)
		if procA.excl != t {
			t.Fatal("exclusive use not recorded")
		}
	})

	t.Run("exclusive waits for other process", func(t *testing.T) {
		released := make(chan time.Time, 1)
		holding := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		// The holder runs as its own subtest so its cleanup releases the lock.
		go t.Run("holder", func(t *testing.T) {
			defer wg.Done()
			procB.acquireShared(t)
			close(holding)
			time.Sleep(300 * time.Millisecond)
			t.Cleanup(func() { released <- time.Now() })
		})
		<-holding
		t.Run("stopper", func(t *testing.T) {
			procA.acquireExclusive(t)
			got := time.Now()
			select {
			case r := <-released:
				if got.Before(r) {
					t.Fatal("exclusive use granted before the other process released its shared use")
				}
			default:
				t.Fatal("exclusive use granted while the other process held shared use")
			}
		})
		wg.Wait()
	})
}

// TestStopStartSecond exercises the recovery helpers; it costs one node boot.
func TestStopStartSecond(t *testing.T) {
	if testing.Short() {
		t.Skip("boots the second node; skipped with -short")
	}
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
