// Package testbed gives integration tests access to real RabbitMQ brokers: the primary
// node (guest/guest on 127.0.0.1:15672/5672), a second node with other credentials
// (exporter2 on 127.0.0.1:15673/5673) and a 3-node cluster (see Cluster), all managed
// by scripts/testbed.sh, and a 2-member cluster on its own addresses (see
// NetnsCluster), managed by scripts/netns-cluster.sh.
//
// Tests using them skip unless the broker lane is on (see Require); the brokers are
// started beforehand, never by a test (see lane.go), except the namespaced cluster,
// which the fault tests that use it start on demand.
package testbed

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Fixed addresses and credentials; scripts/testbed.sh uses the same values.
const (
	PrimaryMgmtURL  = "http://127.0.0.1:15672"
	PrimaryAMQPAddr = "127.0.0.1:5672"
	PrimaryUser     = "guest"
	PrimaryPassword = "guest"

	SecondMgmtURL  = "http://127.0.0.1:15673"
	SecondAMQPAddr = "127.0.0.1:5673"
	// The second node's management API also listens with TLS, its certificate
	// signed by a test CA that scripts/testbed.sh makes.
	SecondTLSURL   = "https://127.0.0.1:15674"
	SecondCAFile   = "/var/tmp/rabbitmq-exporter-testbed/rabbit2/tls/ca.pem"
	SecondUser     = "exporter2"
	SecondPassword = "exporter2-secret"
)

// Broker is one RabbitMQ node as seen by tests.
type Broker struct {
	MgmtURL  string // management API base, e.g. http://127.0.0.1:15672
	AMQPURL  string // AMQP host:port, e.g. 127.0.0.1:5672
	User     string
	Password string
}

// Queue kinds accepted by DeclareQueue (values of x-queue-type).
const (
	Classic = "classic"
	Quorum  = "quorum"
	Stream  = "stream"
)

// httpClient has no timeout of its own: every request carries a context
// bounded by requestCap or by the wait it belongs to.
var httpClient = &http.Client{}

// Primary returns the primary broker (never stopped by tests), skipping t
// outside the broker lane.
func Primary(t testing.TB) Broker {
	t.Helper()
	Require(t)
	b := primaryBroker()
	waitReady(t, describe("primary", b.MgmtURL), b.ready, readyLimit)
	return b
}

// Second returns the second broker, skipping t outside the broker lane.
func Second(t testing.TB) Broker {
	t.Helper()
	Require(t)
	useShared(t)
	b := secondBroker()
	waitReady(t, describe("second", b.MgmtURL), b.ready, readyLimit)
	return b
}

// StartSecond (re)starts the second node and fails the test if that does not
// work. Fault pass only.
func StartSecond(t testing.TB) Broker {
	t.Helper()
	inFaultPass(t, "StartSecond", SecondNode)
	b := secondBroker()
	if err := runScript(t, "second"); err != nil {
		t.Fatalf("testbed: starting second node: %v", err)
	}
	waitReady(t, "second node after start", b.ready, readyLimit)
	return b
}

// StopSecond stops the second node for a recovery test (fault pass only). If
// the node is still down when the test ends, a cleanup starts it again.
func StopSecond(t testing.TB) {
	t.Helper()
	inFaultPass(t, "StopSecond", SecondNode)
	if err := runScript(t, "stop-second"); err != nil {
		t.Fatalf("testbed: stopping second node: %v", err)
	}
	t.Cleanup(func() {
		b := secondBroker()
		if b.ready() == nil {
			return
		}
		if err := runScript(t, "second"); err != nil {
			t.Errorf("testbed: restarting second node after the test: %v", err)
		}
	})
}

func primaryBroker() Broker {
	return Broker{MgmtURL: PrimaryMgmtURL, AMQPURL: PrimaryAMQPAddr, User: PrimaryUser, Password: PrimaryPassword}
}

func secondBroker() Broker {
	return Broker{MgmtURL: SecondMgmtURL, AMQPURL: SecondAMQPAddr, User: SecondUser, Password: SecondPassword}
}

// ready reports whether the management API answers 200 with b's credentials and the
// AMQP port accepts connections (the management listener starts slightly earlier).
// One attempt of a polled wait: its own caps only keep a hung attempt from
// stalling the poll.
func (b Broker) ready() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code, body, err := b.do(ctx, http.MethodGet, "/api/overview", nil)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET %s/api/overview: HTTP %d: %s", b.MgmtURL, code, snippet(body))
	}
	c, err := net.DialTimeout("tcp", b.AMQPURL, 10*time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// RepoRoot walks up from the working directory (a test's package directory) to the
// directory holding go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// runScript runs scripts/testbed.sh with args and logs its output to the test.
func runScript(t testing.TB, args ...string) error {
	t.Helper()
	return runScriptFile(t, "testbed.sh", args...)
}

// runScriptFile runs scripts/<script> with args, for at most 5 minutes, and
// logs its output to the test.
func runScriptFile(t testing.TB, script string, args ...string) error {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(root, "scripts", script)}, args...)...)
	out, err := cmd.CombinedOutput()
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Logf("scripts/%s %s:\n%s", script, strings.Join(args, " "), s)
	}
	if err != nil {
		return fmt.Errorf("scripts/%s %s: %w: %s", script, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// UniqueName returns prefix followed by 10 random hex digits, so tests in parallel
// packages sharing a broker never collide.
func UniqueName(prefix string) string {
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return prefix + hex.EncodeToString(b[:])
}

// do sends one management API request. path must already be escaped (use
// url.PathEscape for vhost and queue names); body, if not nil, is sent as JSON.
func (b Broker) do(ctx context.Context, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		buf, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(b.MgmtURL, "/")+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.SetBasicAuth(b.User, b.Password)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// API sends a management API request and fails the test on transport errors.
// path must already be escaped, e.g. "/api/queues/" + url.PathEscape(vhost).
func (b Broker) API(t testing.TB, method, path string, body any) (int, []byte) {
	t.Helper()
	ctx, cancel := requestContext()
	defer cancel()
	code, data, err := b.do(ctx, method, path, body)
	if err != nil {
		t.Fatalf("testbed: %s %s%s: %v", method, b.MgmtURL, path, err)
	}
	return code, data
}

func (b Broker) mustAPI(t testing.TB, method, path string, body any, want ...int) []byte {
	t.Helper()
	code, data := b.API(t, method, path, body)
	if slices.Contains(want, code) {
		return data
	}
	t.Fatalf("testbed: %s %s%s: HTTP %d, want %v: %s", method, b.MgmtURL, path, code, want, snippet(data))
	return nil
}

// queuePath is the management API path of a queue. RabbitMQ (seen on 3.10) drops CR
// and LF from queue names when declaring, so the queue is found under the name
// without them.
func queuePath(vhost, queue string) string {
	queue = strings.NewReplacer("\r", "", "\n", "").Replace(queue)
	return "/api/queues/" + url.PathEscape(vhost) + "/" + url.PathEscape(queue)
}

// CreateVhost creates vhost (any name: spaces, slashes, non-ASCII), grants b.User
// full permissions on it and deletes it when the test ends.
func (b Broker) CreateVhost(t testing.TB, name string) {
	t.Helper()
	vpath := "/api/vhosts/" + url.PathEscape(name)
	b.mustAPI(t, http.MethodPut, vpath, map[string]string{}, http.StatusCreated, http.StatusNoContent)
	t.Cleanup(func() { b.DeleteVhost(t, name) })
	perm := map[string]string{"configure": ".*", "write": ".*", "read": ".*"}
	b.mustAPI(t, http.MethodPut, "/api/permissions/"+url.PathEscape(name)+"/"+url.PathEscape(b.User), perm,
		http.StatusCreated, http.StatusNoContent)
}

// DeleteVhost deletes vhost; a missing vhost or an unreachable broker (e.g. stopped
// by the test) is only logged, since this mostly runs as cleanup. A busy broker's
// transient failures (timeouts, 5xx) are retried.
func (b Broker) DeleteVhost(t testing.TB, name string) {
	t.Helper()
	b.deleteQuietly(t, "/api/vhosts/"+url.PathEscape(name))
}

// DeleteQueue deletes a queue, tolerating its absence like DeleteVhost.
func (b Broker) DeleteQueue(t testing.TB, vhost, name string) {
	t.Helper()
	b.deleteQuietly(t, queuePath(vhost, name))
}

func (b Broker) deleteQuietly(t testing.TB, path string) {
	t.Helper()
	b.deleteWithin(t, path, Patience)
}

// deleteWithin retries transient failures with a growing pause (250 ms to
// 5 s) until limit has passed: a cleanup may not hold a test for long.
func (b Broker) deleteWithin(t testing.TB, path string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	pause := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		code, data, err := b.do(ctx, http.MethodDelete, path, nil)
		cancel()
		var problem string
		switch {
		case err != nil && errors.Is(err, syscall.ECONNREFUSED):
			// Stopped (by a fault test): its queues go with its data or
			// are deleted by the restart's own cleanup.
			t.Logf("testbed: DELETE %s%s: %v", b.MgmtURL, path, err)
			return
		case err != nil:
			problem = err.Error()
		case code == http.StatusNoContent || code == http.StatusNotFound:
			return
		case code >= 500 || code == http.StatusRequestTimeout || code == http.StatusTooManyRequests:
			problem = fmt.Sprintf("HTTP %d: %s", code, snippet(data))
		default:
			t.Errorf("testbed: DELETE %s%s: HTTP %d: %s", b.MgmtURL, path, code, snippet(data))
			return
		}
		if time.Now().Add(pause).After(deadline) {
			// Like an unreachable broker: logged, not failed.
			t.Logf("testbed: DELETE %s%s: %s; giving up after %d attempts in %v", b.MgmtURL, path, problem, attempt, limit)
			return
		}
		t.Logf("testbed: DELETE %s%s: %s; retrying in %v", b.MgmtURL, path, problem, pause)
		time.Sleep(pause)
		pause = min(2*pause, 5*time.Second)
	}
}

// Dial opens an AMQP connection to vhost with b's credentials, closed when the test
// ends. The vhost goes in amqp.Config rather than the URI, so it needs no escaping.
func (b Broker) Dial(t testing.TB, vhost string) *amqp.Connection {
	t.Helper()
	u := url.URL{Scheme: "amqp", User: url.UserPassword(b.User, b.Password), Host: b.AMQPURL, Path: "/"}
	// Heartbeats every 30 s: a busy broker or test process can miss a
	// 10 s one twice and drop the connection.
	cfg := amqp.Config{Vhost: vhost, Heartbeat: 30 * time.Second, Dial: amqp.DefaultDial(30 * time.Second)}
	var conn *amqp.Connection
	// A just-created vhost can take a moment before it accepts connections.
	WaitFor(t, fmt.Sprintf("AMQP %s to accept %s in vhost %q", b.AMQPURL, b.User, vhost), Patience, func() error {
		var err error
		conn, err = amqp.DialConfig(u.String(), cfg)
		return err
	})
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// DeclareQueue declares a durable queue of kind Classic, Quorum or Stream on conn's
// vhost and deletes it (through the management API) when the test ends.
func (b Broker) DeclareQueue(t testing.TB, conn *amqp.Connection, name, kind string) {
	t.Helper()
	b.DeclareQueueArgs(t, conn, name, kind, nil)
}

// DeclareQueueArgs is DeclareQueue with further x-arguments (x-queue-type is set
// from kind).
func (b Broker) DeclareQueueArgs(t testing.TB, conn *amqp.Connection, name, kind string, args amqp.Table) {
	t.Helper()
	switch kind {
	case Classic, Quorum, Stream:
	default:
		t.Fatalf("testbed: unknown queue kind %q", kind)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("testbed: channel: %v", err)
	}
	defer ch.Close()
	// Quorum and stream queues must be durable and neither exclusive nor auto-delete.
	table := amqp.Table{"x-queue-type": kind}
	maps.Copy(table, args)
	if _, err := ch.QueueDeclare(name, true, false, false, false, table); err != nil {
		t.Fatalf("testbed: declare %s queue %q: %v", kind, name, err)
	}
	vhost := conn.Config.Vhost
	t.Cleanup(func() { b.DeleteQueue(t, vhost, name) })
}

// Publish publishes n persistent messages to queue via the default exchange with
// publisher confirms and returns once all are confirmed. Unroutable messages (a
// missing queue) fail the test.
func (b Broker) Publish(t testing.TB, conn *amqp.Connection, queue string, n int) {
	t.Helper()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("testbed: channel: %v", err)
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		t.Fatalf("testbed: confirm mode: %v", err)
	}
	// Returns precede the confirm of the same message, so after the last confirm
	// every return is already in this channel.
	returns := ch.NotifyReturn(make(chan amqp.Return, n+1))
	ctx, cancel := context.WithTimeout(context.Background(), Patience)
	defer cancel()
	confirms := make([]*amqp.DeferredConfirmation, 0, n)
	for i := range n {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, true, false, amqp.Publishing{
			DeliveryMode: amqp.Persistent,
			ContentType:  "text/plain",
			Body:         fmt.Appendf(nil, "testbed message %d", i),
		})
		if err != nil {
			t.Fatalf("testbed: publish %d/%d to %q: %v", i+1, n, queue, err)
		}
		confirms = append(confirms, dc)
	}
	for i, dc := range confirms {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			t.Fatalf("testbed: waiting for confirm %d/%d from %q: %v", i+1, n, queue, err)
		}
		if !ok {
			t.Fatalf("testbed: message %d/%d to %q was nacked", i+1, n, queue)
		}
	}
	select {
	case r := <-returns:
		t.Fatalf("testbed: message to %q returned: %d %s", queue, r.ReplyCode, r.ReplyText)
	default:
	}
}

// HoldUnacked consumes exactly n messages from a classic or quorum queue without
// acking them and keeps them unacknowledged until the test ends.
func (b Broker) HoldUnacked(t testing.TB, conn *amqp.Connection, queue string, n int) {
	t.Helper()
	var info struct {
		Type string `json:"type"`
	}
	data := b.mustAPI(t, http.MethodGet, queuePath(conn.Config.Vhost, queue), nil, http.StatusOK)
	if err := json.Unmarshal(data, &info); err != nil {
		t.Fatalf("testbed: decoding queue %q: %v", queue, err)
	}
	if info.Type == Stream {
		// Stream consumers receive whole chunks regardless of the prefetch limit
		// (seen on 3.10), so "exactly n unacked" cannot be arranged.
		t.Fatalf("testbed: HoldUnacked does not support stream queue %q", queue)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("testbed: channel: %v", err)
	}
	// Closing the channel requeues the messages; registered before the checks below
	// so a failure does not leak the channel.
	t.Cleanup(func() { _ = ch.Close() })
	// The prefetch limit is what stops the broker at exactly n deliveries.
	if err := ch.Qos(n, 0, false); err != nil {
		t.Fatalf("testbed: qos %d: %v", n, err)
	}
	deliveries, err := ch.Consume(queue, UniqueName("testbed-hold-"), false, false, false, false, nil)
	if err != nil {
		t.Fatalf("testbed: consume %q: %v", queue, err)
	}
	timeout := time.After(Patience)
	for got := 0; got < n; {
		select {
		case _, ok := <-deliveries:
			if !ok {
				t.Fatalf("testbed: consumer on %q closed after %d of %d deliveries", queue, got, n)
			}
			got++
		case <-timeout:
			t.Fatalf("testbed: only %d of %d deliveries from %q within %v", got, n, queue, Patience)
		}
	}
	select {
	case <-deliveries:
		t.Fatalf("testbed: more than %d deliveries from %q despite prefetch %d", n, queue, n)
	case <-time.After(200 * time.Millisecond):
	}
}

// Counts are a queue's three message counts as the management API reports them; nil
// means the field was absent or null.
type Counts struct {
	Messages *int64 `json:"messages"`
	Ready    *int64 `json:"messages_ready"`
	Unacked  *int64 `json:"messages_unacknowledged"`
}

func (c Counts) String() string {
	f := func(p *int64) string {
		if p == nil {
			return "absent"
		}
		return fmt.Sprint(*p)
	}
	return fmt.Sprintf("messages=%s ready=%s unacked=%s", f(c.Messages), f(c.Ready), f(c.Unacked))
}

func (c Counts) equal(messages, ready, unacked int64) bool {
	return c.Messages != nil && *c.Messages == messages &&
		c.Ready != nil && *c.Ready == ready &&
		c.Unacked != nil && *c.Unacked == unacked
}

// QueueCounts returns the current counts of one queue.
func (b Broker) QueueCounts(t testing.TB, vhost, queue string) Counts {
	t.Helper()
	var c Counts
	if err := json.Unmarshal(b.mustAPI(t, http.MethodGet, queuePath(vhost, queue), nil, http.StatusOK), &c); err != nil {
		t.Fatalf("testbed: decoding queue %q: %v", queue, err)
	}
	return c
}

// WaitForCounts polls the queue until the management API reports exactly these
// counts. The broker refreshes queue stats only every ~5 s, so allow at least 10 s;
// the wait lasts up to Patience even if timeout is shorter.
func (b Broker) WaitForCounts(t testing.TB, vhost, queue string, messages, ready, unacked int64, timeout time.Duration) {
	t.Helper()
	last := b.poll(queuePath(vhost, queue), timeout, func(data []byte) (bool, string) {
		var c Counts
		if err := json.Unmarshal(data, &c); err != nil {
			return false, "bad JSON: " + err.Error()
		}
		return c.equal(messages, ready, unacked), c.String()
	})
	if last != "" {
		t.Fatalf("testbed: queue %q in vhost %q: want messages=%d ready=%d unacked=%d within %v, last seen %s",
			queue, vhost, messages, ready, unacked, max(timeout, Patience), last)
	}
}

// WaitForQueueListed polls GET /api/queues/{vhost} (the listing the exporter reads)
// until queue appears in it, for up to Patience even if timeout is shorter.
func (b Broker) WaitForQueueListed(t testing.TB, vhost, queue string, timeout time.Duration) {
	t.Helper()
	last := b.poll("/api/queues/"+url.PathEscape(vhost)+"?columns=name", timeout, func(data []byte) (bool, string) {
		var qs []struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal(data, &qs); err != nil {
			return false, "bad JSON: " + err.Error()
		}
		for _, q := range qs {
			if q.Name == queue {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d other queues listed", len(qs))
	})
	if last != "" {
		t.Fatalf("testbed: queue %q not listed in vhost %q within %v: %s", queue, vhost, max(timeout, Patience), last)
	}
}

// poll GETs path every 250 ms until check accepts a 200 answer or timeout
// (at least Patience) passes. It returns "" on success, else what was seen
// last.
func (b Broker) poll(path string, timeout time.Duration, check func(data []byte) (done bool, seen string)) string {
	var last string
	deadline := time.Now().Add(max(timeout, Patience))
	for {
		ctx, cancel := requestContext()
		code, data, err := b.do(ctx, http.MethodGet, path, nil)
		cancel()
		switch {
		case err != nil:
			last = err.Error()
		case code != http.StatusOK:
			last = fmt.Sprintf("HTTP %d: %s", code, snippet(data))
		default:
			done, seen := check(data)
			if done {
				return ""
			}
			last = seen
		}
		if time.Now().After(deadline) {
			return last
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
