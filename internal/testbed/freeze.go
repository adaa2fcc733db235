package testbed

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// memberDir is where scripts/testbed.sh keeps cluster member i's files.
func memberDir(i int) string {
	return fmt.Sprintf("/var/tmp/rabbitmq-exporter-testbed/rabbit%d", i)
}

// memberPID returns the pid of member i's Erlang VM, from the pid file the
// script gives RabbitMQ, checked against the process's node name so that a
// stale pid file cannot make a test signal another process.
func memberPID(i int) (int, error) {
	path := fmt.Sprintf("%s/rabbit%d.pid", memberDir(i), i)
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("%s holds no pid: %q", path, b)
	}
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return 0, fmt.Errorf("pid %d from %s: %w", pid, path, err)
	}
	want := []byte("RABBITMQ_NODENAME=" + clusterMember(i).Node)
	if !bytes.Contains(append([]byte{0}, env...), append(append([]byte{0}, want...), 0)) {
		return 0, fmt.Errorf("pid %d from %s is not %s's VM", pid, path, clusterMember(i).Node)
	}
	return pid, nil
}

// FreezeMember stops member i's Erlang VM with SIGSTOP (fault pass only):
// what a stalled VM or a partition that drops packets looks like from
// outside. The returned function resumes it (SIGCONT) and waits until the
// cluster is ready again; a cleanup resumes it whatever the test did.
// Keep a freeze well under net_ticktime (60 s), or the peers declare the
// member down and the cluster partitions.
func FreezeMember(t testing.TB, i int) (thaw func()) {
	t.Helper()
	checkMember(t, i)
	inFaultPass(t, "FreezeMember", TestCluster)
	pid, err := memberPID(i)
	if err != nil {
		t.Fatalf("testbed: freezing cluster member %d: %v", i, err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("testbed: SIGSTOP %d (%s): %v", pid, clusterMember(i).Node, err)
	}
	frozen := time.Now()
	thawed := false
	resume := func() {
		if thawed {
			return
		}
		thawed = true
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			t.Errorf("testbed: SIGCONT %d (%s): %v", pid, clusterMember(i).Node, err)
			return
		}
		t.Logf("testbed: %s resumed after %s frozen", clusterMember(i).Node, time.Since(frozen).Round(time.Millisecond))
	}
	t.Cleanup(resume)
	return func() {
		t.Helper()
		resume()
		waitReady(t, fmt.Sprintf("cluster after resuming member %d", i), clusterInfo().ready, readyLimit)
	}
}
