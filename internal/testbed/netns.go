package testbed

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// The namespaced cluster of scripts/netns-cluster.sh: members rabbit6@m6 and
// rabbit7@m7, each in its own network namespace with its own address
// (10.77.0.6, 10.77.0.7) and host name, both resolvable here through
// /etc/hosts, and RabbitMQ's default ports on each address. Discovery then
// follows node names as in production: /api/nodes names rabbit7@m7 and its
// plugin is read at m7:15692. Same credentials as the 3-node cluster.
const netnsScript = "netns-cluster.sh"

// NetnsMembers are the indexes of the namespaced cluster's members.
var NetnsMembers = [...]int{6, 7}

func netnsMember(i int) Member {
	host := fmt.Sprintf("m%d", i)
	return Member{
		Broker: Broker{
			MgmtURL:  "http://" + host + ":15672",
			AMQPURL:  host + ":5672",
			User:     ClusterUser,
			Password: ClusterPassword,
		},
		Index:     i,
		Node:      fmt.Sprintf("rabbit%d@%s", i, host),
		PluginURL: "http://" + host + ":15692",
	}
}

func netnsClusterInfo() ClusterInfo {
	var c ClusterInfo
	for _, i := range NetnsMembers {
		c.Members = append(c.Members, netnsMember(i))
	}
	return c
}

// NetnsCluster brings the namespaced cluster up (scripts/netns-cluster.sh
// up: idempotent, about 1 s when it runs already, 30-60 s cold) and returns
// it once both members answer and see each other running with their
// prometheus listeners (fault pass only: it needs root and changes the
// machine's network). It stays up after the test, like the test bed.
func NetnsCluster(t testing.TB) ClusterInfo {
	t.Helper()
	inFaultPass(t, "NetnsCluster", NamespacedCluster)
	start := time.Now()
	if err := runScriptFile(t, netnsScript, "up"); err != nil {
		t.Fatalf("testbed: starting the namespaced cluster: %v", err)
	}
	c := netnsClusterInfo()
	waitReady(t, "namespaced cluster", c.ready, readyLimit)
	t.Logf("testbed: namespaced cluster ready in %v", time.Since(start).Round(time.Millisecond))
	return c
}

// DropLink makes member i's link of the namespaced cluster drop every
// packet (its veth set down, fault pass only): connections to it neither
// fail nor answer, as in a silent partition. The returned function restores
// the link and returns once the member's plugin accepts connections again;
// a cleanup restores it whatever the test did. Keep a drop well under
// net_ticktime (60 s), or the members declare each other down.
func DropLink(t testing.TB, i int) (restore func()) {
	t.Helper()
	member := netnsFault(t, "DropLink", i, "dropping %s's link", "drop")
	dropped := time.Now()
	return undoOnce(t, member+"'s link", func() error {
		if err := runScriptFile(t, netnsScript, "restore", member); err != nil {
			return err
		}
		t.Logf("testbed: %s's link restored after %v", member, time.Since(dropped).Round(time.Millisecond))
		return nil
	})
}

// SlowPlugin makes member i's plugin answers of the namespaced cluster
// leave at kbit kbit/s (fault pass only): the exporter reads a trickle,
// while the members' own traffic keeps full speed. The returned function
// restores full speed; a cleanup restores it whatever the test did.
// (A fixed added latency needs tc netem, which this machine's kernel lacks;
// a trickle is the slow member that still answers.)
func SlowPlugin(t testing.TB, i, kbit int) (restore func()) {
	t.Helper()
	member := netnsFault(t, "SlowPlugin", i, "slowing %s's plugin", "slow", fmt.Sprint(kbit))
	return undoOnce(t, member+"'s plugin speed", func() error {
		return runScriptFile(t, netnsScript, "slow", member, "0")
	})
}

// netnsFault checks that the test may fault namespaced member i and runs
// netns-cluster.sh's command on it; it returns the member's name (mN).
func netnsFault(t testing.TB, helper string, i int, doing, command string, args ...string) string {
	t.Helper()
	if !slices.Contains(NetnsMembers[:], i) {
		t.Fatalf("testbed: no namespaced member %d (members are %v)", i, NetnsMembers)
	}
	inFaultPass(t, helper, NamespacedCluster)
	member := fmt.Sprintf("m%d", i)
	if err := runScriptFile(t, netnsScript, append([]string{command, member}, args...)...); err != nil {
		t.Fatalf("testbed: %s: %v", fmt.Sprintf(doing, member), err)
	}
	return member
}

// undoOnce returns a function that runs undo (restoring what) the first
// time it is called, failing the test if undo fails; a cleanup calls it too,
// so what a test changed is restored whatever the test did.
func undoOnce(t testing.TB, what string, undo func() error) func() {
	done := false
	once := func() error {
		if done {
			return nil
		}
		done = true
		return undo()
	}
	t.Cleanup(func() {
		if err := once(); err != nil {
			t.Errorf("testbed: restoring %s after the test: %v", what, err)
		}
	})
	return func() {
		t.Helper()
		if err := once(); err != nil {
			t.Fatalf("testbed: restoring %s: %v", what, err)
		}
	}
}
