package testbed

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The test cluster of scripts/testbed.sh cluster: members rabbit3, rabbit4 and
// rabbit5@localhost, every port a base plus the member's index (3, 4, 5). rabbit3 is
// the seed the others joined; rabbit5 serves its rabbitmq_prometheus plugin over
// HTTPS only, with a certificate from the second node's test CA (SecondCAFile).
const (
	ClusterUser     = "cluster"
	ClusterPassword = "cluster-secret"
	ClusterCAFile   = SecondCAFile

	clusterTLSMember = 5
)

// ClusterMembers are the indexes StopMember and StartMember take.
var ClusterMembers = [...]int{3, 4, 5}

// Member is one node of the test cluster.
type Member struct {
	Broker           // this member's management API and AMQP listener, cluster credentials
	Index     int    // 3, 4 or 5
	Node      string // Erlang node name, e.g. rabbit3@localhost
	PluginURL string // base URL of its rabbitmq_prometheus listener, e.g. http://localhost:15695
	CAFile    string // CA that signed the plugin's certificate when PluginURL is https, else ""
}

// ClusterInfo describes the running test cluster.
type ClusterInfo struct {
	Members []Member // in index order, the seed rabbit3 first
}

// Member returns the member with index i (3, 4 or 5).
func (c ClusterInfo) Member(i int) Member {
	for _, m := range c.Members {
		if m.Index == i {
			return m
		}
	}
	panic(fmt.Sprintf("testbed: no cluster member %d", i))
}

// Nodes returns the members' node names.
func (c ClusterInfo) Nodes() []string {
	var names []string
	for _, m := range c.Members {
		names = append(names, m.Node)
	}
	return names
}

func clusterMember(i int) Member {
	m := Member{
		Broker: Broker{
			MgmtURL:  fmt.Sprintf("http://127.0.0.1:%d", 15672+i),
			AMQPURL:  fmt.Sprintf("127.0.0.1:%d", 5672+i),
			User:     ClusterUser,
			Password: ClusterPassword,
		},
		Index:     i,
		Node:      fmt.Sprintf("rabbit%d@localhost", i),
		PluginURL: fmt.Sprintf("http://localhost:%d", 15692+i),
	}
	if i == clusterTLSMember {
		m.PluginURL = fmt.Sprintf("https://localhost:%d", 15692+i)
		m.CAFile = ClusterCAFile
	}
	return m
}

func clusterInfo() ClusterInfo {
	var c ClusterInfo
	for _, i := range ClusterMembers {
		c.Members = append(c.Members, clusterMember(i))
	}
	return c
}

// Cluster returns the test cluster, skipping t outside the broker lane.
func Cluster(t testing.TB) ClusterInfo {
	t.Helper()
	Require(t)
	useShared(t)
	c := clusterInfo()
	waitReady(t, describe("cluster", c.Members[0].MgmtURL), c.ready, readyLimit)
	return c
}

// ready: every member answers, and the seed sees all members running with their
// prometheus listener listed (contexts appear a few seconds after a member starts).
func (c ClusterInfo) ready() error {
	for _, m := range c.Members {
		if err := m.ready(); err != nil {
			return err
		}
		if err := m.pluginListening(); err != nil {
			return err
		}
	}
	nodes, err := c.Members[0].nodes()
	if err != nil {
		return err
	}
	for _, m := range c.Members {
		n, ok := nodes[m.Node]
		switch {
		case !ok:
			return fmt.Errorf("%s does not list %s in /api/nodes", c.Members[0].Node, m.Node)
		case !n.Running:
			return fmt.Errorf("%s reports %s not running", c.Members[0].Node, m.Node)
		case n.Plugin() == nil:
			return fmt.Errorf("%s lists no prometheus context for %s yet", c.Members[0].Node, m.Node)
		}
	}
	return nil
}

func (m Member) pluginListening() error {
	u, err := url.Parse(m.PluginURL)
	if err != nil {
		return err
	}
	conn, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		return err
	}
	return conn.Close()
}

// StopMember stops the rabbit application (not the VM) of member i, returning once
// another member's /api/nodes reports it not running (fault pass only). A cleanup
// starts the member again if the test leaves it stopped.
func StopMember(t testing.TB, i int) {
	t.Helper()
	checkMember(t, i)
	inFaultPass(t, "StopMember", TestCluster)
	if err := runScript(t, "stop-member", strconv.Itoa(i)); err != nil {
		t.Fatalf("testbed: stopping cluster member %d: %v", i, err)
	}
	t.Cleanup(func() {
		if clusterMember(i).ready() == nil {
			return
		}
		if err := runScript(t, "start-member", strconv.Itoa(i)); err != nil {
			t.Errorf("testbed: restarting cluster member %d after the test: %v", i, err)
		}
	})
}

// StartMember starts the rabbit application of member i, returning once it answers
// and another member's /api/nodes reports it running with its prometheus context
// (fault pass only).
func StartMember(t testing.TB, i int) Member {
	t.Helper()
	checkMember(t, i)
	inFaultPass(t, "StartMember", TestCluster)
	if err := runScript(t, "start-member", strconv.Itoa(i)); err != nil {
		t.Fatalf("testbed: starting cluster member %d: %v", i, err)
	}
	m := clusterMember(i)
	waitReady(t, fmt.Sprintf("cluster member %d after start", i), m.ready, readyLimit)
	return m
}

func checkMember(t testing.TB, i int) {
	t.Helper()
	if !slices.Contains(ClusterMembers[:], i) {
		t.Fatalf("testbed: no cluster member %d (members are %v)", i, ClusterMembers)
	}
}

// NodeInfo is one entry of GET /api/nodes?columns=name,running,contexts.
type NodeInfo struct {
	Name     string        `json:"name"`
	Running  bool          `json:"running"`
	Contexts []NodeContext `json:"contexts"`
}

// NodeContext is one web listener of a node. RabbitMQ reports the port as a string
// and, on 3.10, the protocol with Erlang atom quotes ('http/prometheus').
type NodeContext struct {
	Description string `json:"description"`
	Port        string `json:"port"`
	Protocol    string `json:"protocol"`
}

// Plugin returns the node's prometheus listener context, or nil.
func (n NodeInfo) Plugin() *NodeContext {
	for i, c := range n.Contexts {
		if strings.HasSuffix(strings.Trim(c.Protocol, "'"), "/prometheus") {
			return &n.Contexts[i]
		}
	}
	return nil
}

// Nodes returns the member's view of the cluster, GET /api/nodes, keyed by node name.
func (m Member) Nodes(t testing.TB) map[string]NodeInfo {
	t.Helper()
	nodes, err := m.nodes()
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	return nodes
}

func (m Member) nodes() (map[string]NodeInfo, error) {
	ctx, cancel := requestContext()
	defer cancel()
	path := "/api/nodes?columns=name,running,contexts"
	code, data, err := m.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET %s%s: HTTP %d: %s", m.MgmtURL, path, code, snippet(data))
	}
	var list []NodeInfo
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("GET %s%s: %w", m.MgmtURL, path, err)
	}
	nodes := make(map[string]NodeInfo, len(list))
	for _, n := range list {
		nodes[n.Name] = n
	}
	return nodes, nil
}

// PluginClient returns an HTTP client for the member's plugin listener, trusting the
// test CA when it serves HTTPS.
func (m Member) PluginClient(t testing.TB) *http.Client {
	t.Helper()
	if m.CAFile == "" {
		return httpClient
	}
	pem, err := os.ReadFile(m.CAFile)
	if err != nil {
		t.Fatalf("testbed: reading test CA: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("testbed: no certificate in %s", m.CAFile)
	}
	return &http.Client{
		Timeout:   httpClient.Timeout,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}
}

// Scrape GETs the member's plugin at path (e.g.
// "/metrics/detailed?family=queue_coarse_metrics") and returns the body; any status
// but 200 fails the test.
func (m Member) Scrape(t testing.TB, path string) []byte {
	t.Helper()
	ctx, cancel := requestContext()
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.PluginURL+path, nil)
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	resp, err := m.PluginClient(t).Do(req)
	if err != nil {
		t.Fatalf("testbed: GET %s%s: %v", m.PluginURL, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("testbed: GET %s%s: %v", m.PluginURL, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("testbed: GET %s%s: HTTP %d: %s", m.PluginURL, path, resp.StatusCode, snippet(body))
	}
	return body
}

// queuePlacement is where the management API says a queue lives.
type queuePlacement struct {
	Node    string   `json:"node"`   // classic: its node; stream: its leader
	Leader  string   `json:"leader"` // quorum: its leader
	Members []string `json:"members"`
}

func (p queuePlacement) leader() string {
	if p.Leader != "" {
		return p.Leader
	}
	return p.Node
}

// DeclareClassic declares a durable classic queue on member m (connected to m over
// AMQP, so the default client-local placement puts it there), checks through the
// management API that it lives on m.Node and returns the connection for Publish and
// HoldUnacked. The queue is deleted when the test ends.
func (m Member) DeclareClassic(t testing.TB, vhost, name string) *amqp.Connection {
	t.Helper()
	conn := m.Dial(t, vhost)
	m.DeclareQueueArgs(t, conn, name, Classic, amqp.Table{"x-queue-master-locator": "client-local"})
	m.checkPlacement(t, vhost, name, nil)
	return conn
}

// DeclareReplicated declares a quorum queue or stream (kind Quorum or Stream) with
// its leader on m and a replica on every cluster member, checks that placement through
// the management API and returns the connection to m. The queue is deleted when the
// test ends.
func (m Member) DeclareReplicated(t testing.TB, c ClusterInfo, vhost, name, kind string) *amqp.Connection {
	t.Helper()
	if kind != Quorum && kind != Stream {
		t.Fatalf("testbed: DeclareReplicated takes Quorum or Stream, not %q", kind)
	}
	conn := m.Dial(t, vhost)
	args := amqp.Table{"x-queue-leader-locator": "client-local"}
	if kind == Quorum {
		args["x-quorum-initial-group-size"] = int32(len(c.Members))
	} else {
		args["x-initial-cluster-size"] = int32(len(c.Members))
	}
	m.DeclareQueueArgs(t, conn, name, kind, args)
	m.checkPlacement(t, vhost, name, c.Nodes())
	return conn
}

// checkPlacement fails the test unless the queue's leader is m.Node and, when
// members is not nil, its replicas are exactly those nodes. It polls for a while: a
// new stream lists its members only once the stream coordinator has started them
// (up to Patience on a busy machine).
func (m Member) checkPlacement(t testing.TB, vhost, name string, members []string) {
	t.Helper()
	want := slices.Sorted(slices.Values(members))
	last := m.poll(queuePath(vhost, name), 15*time.Second, func(data []byte) (bool, string) {
		var p queuePlacement
		if err := json.Unmarshal(data, &p); err != nil {
			return false, "bad JSON: " + err.Error()
		}
		got := slices.Sorted(slices.Values(p.Members))
		ok := p.leader() == m.Node && (members == nil || slices.Equal(got, want))
		return ok, fmt.Sprintf("leader %q, replicas %v", p.leader(), got)
	})
	if last != "" {
		t.Fatalf("testbed: queue %q declared through %s: want leader %s and replicas %v, last seen %s",
			name, m.Node, m.Node, want, last)
	}
}
