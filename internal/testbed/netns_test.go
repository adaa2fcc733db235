package testbed

import (
	"errors"
	"fmt"
	"net"
	"testing"
	"time"
)

// TestFaultNetnsCluster: the namespaced members resolve to their own
// addresses, list each other by node name with their plugin on the default
// port, and DropLink makes a member silent (a dial times out rather than
// being refused) until the link is restored.
func TestFaultNetnsCluster(t *testing.T) {
	RequireFaults(t, NamespacedCluster)
	c := NetnsCluster(t)
	for _, m := range c.Members {
		addrs, err := net.LookupHost(fmt.Sprintf("m%d", m.Index))
		if want := fmt.Sprintf("10.77.0.%d", m.Index); err != nil || len(addrs) != 1 || addrs[0] != want {
			t.Errorf("m%d resolves to %v (%v), want %s", m.Index, addrs, err, want)
		}
		for _, o := range c.Members {
			n := m.Nodes(t)[o.Node]
			if p := n.Plugin(); !n.Running || p == nil || p.Port != "15692" {
				t.Errorf("%s lists %s as %+v, want running with its plugin on 15692", m.Node, o.Node, n)
			}
		}
	}
	m7 := c.Member(7)
	restore := DropLink(t, 7)
	_, err := net.DialTimeout("tcp", "m7:15692", 3*time.Second)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("dialling m7's plugin with its link down: %v, want a timeout", err)
	}
	if err := c.Member(6).pluginListening(); err != nil {
		t.Errorf("m6's plugin with m7's link down: %v", err)
	}
	restore()
	if err := m7.pluginListening(); err != nil {
		t.Errorf("m7's plugin after restore: %v", err)
	}
}
