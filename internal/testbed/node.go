package testbed

import (
	"errors"
	"fmt"
	"strconv"
	"syscall"
	"testing"
)

// StopNode stops member i's whole Erlang VM (fault pass only): SIGTERM,
// which the VM takes as a graceful shutdown (init:stop), as a host's service
// manager does. It returns once the VM is gone and another member's
// /api/nodes reports it not running; a cleanup starts it again if the test
// leaves it stopped.
func StopNode(t testing.TB, i int) {
	t.Helper()
	checkMember(t, i)
	inFaultPass(t, "StopNode", TestCluster)
	pid, err := memberPID(i)
	if err != nil {
		t.Fatalf("testbed: stopping cluster member %d: %v", i, err)
	}
	t.Cleanup(func() {
		if clusterMember(i).ready() == nil {
			return
		}
		if err := runScript(t, "cluster"); err != nil {
			t.Errorf("testbed: restarting cluster member %d after the test: %v", i, err)
		}
	})
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("testbed: SIGTERM %d (%s): %v", pid, clusterMember(i).Node, err)
	}
	node := clusterMember(i).Node
	waitReady(t, fmt.Sprintf("%s's VM to exit", node), func() error {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return fmt.Errorf("pid %d still runs", pid)
	}, readyLimit)
	waitReady(t, fmt.Sprintf("a peer to report %s not running", node), func() error {
		for _, m := range clusterInfo().Members {
			if m.Index == i {
				continue
			}
			nodes, err := m.nodes()
			if err != nil {
				continue
			}
			if n, ok := nodes[node]; ok && !n.Running {
				return nil
			}
			return fmt.Errorf("%s reports %s running", m.Node, node)
		}
		return errors.New("no peer answers")
	}, readyLimit)
}

// StartNode starts member i's VM again through scripts/testbed.sh cluster
// (fault pass only), returning once the member answers.
func StartNode(t testing.TB, i int) Member {
	t.Helper()
	checkMember(t, i)
	inFaultPass(t, "StartNode", TestCluster)
	if err := runScript(t, "cluster"); err != nil {
		t.Fatalf("testbed: starting cluster member %d: %v", i, err)
	}
	m := clusterMember(i)
	waitReady(t, "cluster member "+strconv.Itoa(i)+" after its VM started", m.ready, readyLimit)
	return m
}
