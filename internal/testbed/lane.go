package testbed

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The lanes. A plain `go test ./...` starts nothing and touches no broker:
// every test that needs one skips unless EnvBrokers is 1, and never runs
// under -short. make test (and CI) prepares the brokers with
// scripts/testbed.sh all and runs two passes:
//
//	RQE_TEST_BROKERS=1 go test -skip '^TestFault' ./...
//	RQE_TEST_BROKERS=1 RQE_TEST_FAULTS=1 go test -p 1 -parallel 8 -run '^TestFault' ./...
//
// Tests that stop, restart or freeze a shared broker are named TestFault*
// and call RequireFaults: they run in the second pass, one package at a
// time, so no other test's broker disappears under it; within a package,
// fault tests of different brokers run side by side.
const (
	EnvBrokers = "RQE_TEST_BROKERS"
	EnvFaults  = "RQE_TEST_FAULTS"
)

// Enabled reports whether this run includes the broker tests.
func Enabled() bool { return os.Getenv(EnvBrokers) == "1" && !testing.Short() }

// The full lane is the broker lane: besides the broker tests it runs the
// exhaustive and slow hermetic ones (every Accept header Prometheus sends,
// the Dockerfile.source build, multi-GB listings, the soak), which would
// keep a plain `go test ./...`
// from finishing within a minute on a 2-core machine. The hermetic lane
// covers the same code with representative cases.

// Full reports whether this run is the full lane (see RequireFull).
func Full() bool { return Enabled() }

// RequireFull skips t unless the full lane is on: EnvBrokers=1 and not
// -short. what says why the test waits for that lane (e.g. "exhaustive").
// Unlike Require it needs no broker.
func RequireFull(t testing.TB, what string) {
	t.Helper()
	if !Full() {
		t.Skipf("%s: runs in the full lane only (%s=1 without -short, as make test does)", what, EnvBrokers)
	}
}

// Require skips t unless the broker lane is on. In the lane, a broker that
// does not answer fails the test: nothing that needs a broker skips there.
func Require(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs RabbitMQ; skipped with -short")
	}
	if os.Getenv(EnvBrokers) != "1" {
		t.Skipf("needs RabbitMQ: run scripts/testbed.sh all and set %s=1 (make test does both)", EnvBrokers)
	}
}

// Brokers names a set of shared brokers that fault tests stop, restart or
// freeze. Fault tests of different sets run at the same time; tests of one
// set take turns.
type Brokers int

const (
	// SecondNode is rabbit2@localhost (Second).
	SecondNode Brokers = iota
	// TestCluster is the 3-node cluster rabbit3..5@localhost (Cluster).
	TestCluster
	// NamespacedCluster is rabbit6@m6 and rabbit7@m7 (NetnsCluster).
	NamespacedCluster
	brokerSets
)

func (b Brokers) String() string {
	return [...]string{"the second node", "the test cluster", "the namespaced cluster"}[b]
}

// faultTurns gives each set of brokers to one fault test at a time.
var faultTurns [brokerSets]sync.Mutex

// turnHolders names the test holding each set ("" when none).
var turnHolders struct {
	sync.Mutex
	name [brokerSets]string
}

// RequireFaults is Require for a test that stops, restarts or freezes the
// shared brokers uses (name it TestFault*). It runs only in the fault pass,
// where the process holds every shared broker exclusively, and in parallel
// with the fault tests of other brokers: RequireFaults calls t.Parallel
// first, so a test waiting for its turn holds nothing, then takes its turn
// on each set in uses for the rest of the test. (The fault pass runs only
// fault tests, with -parallel high enough that tests waiting for a turn
// leave room for the others.)
func RequireFaults(t *testing.T, uses ...Brokers) {
	t.Helper()
	Require(t)
	if os.Getenv(EnvFaults) != "1" {
		t.Skipf("stops shared brokers: runs in the fault pass (%s=1 go test -p 1 -parallel 8 -run '^TestFault', as make test does)", EnvFaults)
	}
	if len(uses) == 0 {
		t.Fatal("testbed: RequireFaults needs the brokers the test stops")
	}
	t.Parallel()
	brokersUse.hold(t, true)
	uses = slices.Clone(uses)
	slices.Sort(uses) // one order, so two tests never wait for each other
	for _, b := range slices.Compact(uses) {
		start := time.Now()
		faultTurns[b].Lock()
		setHolder(b, t.Name())
		t.Cleanup(func() {
			setHolder(b, "")
			faultTurns[b].Unlock()
		})
		if waited := time.Since(start); waited > time.Second {
			t.Logf("testbed: waited %v for %s (another fault test had it)", waited.Round(time.Second), b)
		}
	}
}

// inFaultPass is checked by the helpers that stop brokers: the calling test
// must hold its turn on b.
func inFaultPass(t testing.TB, helper string, b Brokers) {
	t.Helper()
	if os.Getenv(EnvFaults) != "1" || !brokersUse.heldExclusive() {
		t.Fatalf("testbed: %s stops a shared broker: call it from a TestFault* test after RequireFaults", helper)
	}
	if !holds(t.Name(), b) {
		t.Fatalf("testbed: %s stops %s: the test must name it in RequireFaults", helper, b)
	}
}

func setHolder(b Brokers, name string) {
	turnHolders.Lock()
	defer turnHolders.Unlock()
	turnHolders.name[b] = name
}

// holds reports whether the test named name (or its parent) holds b.
func holds(name string, b Brokers) bool {
	turnHolders.Lock()
	defer turnHolders.Unlock()
	h := turnHolders.name[b]
	return h != "" && (name == h || strings.HasPrefix(name, h+"/"))
}

// brokersUse keeps the passes of concurrent test runs on this machine (two
// checkouts, a developer beside CI) apart: a process of the first pass that
// uses the second node or the cluster holds a shared flock until it exits;
// a process of the fault pass holds it exclusively. flock is released by
// the kernel when the process ends, so a crashed test leaves no lock. (It is
// not scripts/testbed.sh's lock, which serializes the script's own commands.)
var brokersUse = &processLock{name: "rabbitmq-exporter-testbed-users.lock", what: "the second node and the test cluster", wait: 20 * time.Minute}

type processLock struct {
	name, what string
	dir        string // default: /run/lock, else the temporary directory
	wait       time.Duration

	mu        sync.Mutex
	f         *os.File
	exclusive bool
}

func (l *processLock) path() string {
	dir := l.dir
	if dir == "" {
		dir = os.TempDir()
		if st, err := os.Stat("/run/lock"); err == nil && st.IsDir() && syscall.Access("/run/lock", 2) == nil {
			dir = "/run/lock"
		}
	}
	return filepath.Join(dir, l.name)
}

// hold takes the lock for this process, shared or exclusive, once; later
// calls return at once. While another run holds it the wait is logged
// every 30 s, naming what it waits for.
func (l *processLock) hold(t testing.TB, exclusive bool) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		if exclusive && !l.exclusive {
			t.Fatalf("testbed: a test of this process already uses %s shared; fault tests run in their own pass", l.what)
		}
		return
	}
	// Read-only suffices for flock and works on a file another user created.
	f, err := os.OpenFile(l.path(), os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatalf("testbed: lock file: %v", err)
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	start := time.Now()
	nextLog := start.Add(30 * time.Second)
	for syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB) != nil {
		if time.Since(start) > l.wait {
			_ = f.Close()
			t.Fatalf("testbed: waited %v for %s: another test run on this machine holds %s", l.wait, lockKind(exclusive), l.path())
		}
		if time.Now().After(nextLog) {
			t.Logf("testbed: waiting %v so far for %s of %s: another test run on this machine holds %s", time.Since(start).Round(time.Second), lockKind(exclusive), l.what, l.path())
			nextLog = nextLog.Add(30 * time.Second)
		}
		time.Sleep(200 * time.Millisecond)
	}
	l.f, l.exclusive = f, exclusive
}

func (l *processLock) heldExclusive() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f != nil && l.exclusive
}

func lockKind(exclusive bool) string {
	if exclusive {
		return "exclusive use"
	}
	return "shared use"
}

// useShared records that this process uses the brokers fault tests stop;
// in the fault pass the process already holds them exclusively.
func useShared(t testing.TB) {
	t.Helper()
	if os.Getenv(EnvFaults) == "1" {
		return
	}
	brokersUse.hold(t, false)
}

// waitReady polls ready until it succeeds, for at most limit (at least
// Patience), and fails the test naming what it waited for and the last
// error.
func waitReady(t testing.TB, what string, ready func() error, limit time.Duration) {
	t.Helper()
	limit = max(limit, Patience)
	if err := Await(t, what, limit, ready); err != nil {
		t.Fatalf("testbed: %s not ready within %v: %v (start the test brokers with scripts/testbed.sh all)", what, limit, err)
	}
}

// readyLimit caps the wait for a broker the lane expects up.
const readyLimit = Patience

func describe(what, url string) string { return fmt.Sprintf("%s broker %s", what, url) }
