package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// exporterBinary is built once by TestMain through scripts/build.sh, the same
// path `make build` takes, with fixed version metadata to assert on.
var exporterBinary string

const (
	testRevision = "0123456789abcdef"
	testBranch   = "test-branch"
	testDate     = "20261130-10:00:00"
)

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rqe-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cmd := exec.Command("./scripts/build.sh")
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "BUILD_DIR="+dir, "REVISION="+testRevision, "BRANCH="+testBranch, "BUILD_DATE="+testDate, "BUILD_USER=tester@ci",
		"GOOS="+runtime.GOOS, "GOARCH="+runtime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the exporter: %v\n%s", err, out)
		os.Exit(1)
	}
	exporterBinary = filepath.Join(dir, runtime.GOOS+"-"+runtime.GOARCH, "rabbitmq_queue_exporter")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// lockedBuffer collects a process's output while it runs.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type exporterProc struct {
	cmd    *exec.Cmd
	addr   string // host:port it listens on
	scheme string
	logs   *lockedBuffer
	done   chan error
	client *http.Client
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startExporter runs the built binary with env (added to a clean environment)
// and args, and waits until it serves /-/healthy.
func startExporter(t *testing.T, env []string, args ...string) *exporterProc {
	t.Helper()
	addr := freePort(t)
	p := &exporterProc{addr: addr, scheme: "http", logs: &lockedBuffer{}, done: make(chan error, 1),
		client: &http.Client{Timeout: 30 * time.Second}}
	for _, a := range args {
		if strings.HasPrefix(a, "--web.config.file=") {
			p.scheme = "https"
			p.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
		}
	}
	p.cmd = exec.Command(exporterBinary, append([]string{"--web.listen-address=" + addr, "--log.level=debug"}, args...)...)
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	p.cmd.Stdout = p.logs
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { p.stop(t) })
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case err := <-p.done:
			t.Fatalf("exporter exited at start-up: %v\n%s", err, p.logs)
		default:
		}
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("exporter did not listen on %s:\n%s", addr, p.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and returns the exit error (nil for exit 0).
func (p *exporterProc) stop(t *testing.T) error {
	if p.cmd.ProcessState != nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Errorf("exporter did not stop within 20s of SIGTERM")
		return <-p.done
	}
}

func (p *exporterProc) url(path string) string { return p.scheme + "://" + p.addr + path }

type response struct {
	status int
	header http.Header
	body   string
}

func (p *exporterProc) get(t *testing.T, path string, header http.Header) response {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, p.url(path), nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v\nexporter log:\n%s", path, err, p.logs)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// samples parses a text exposition into "name{k=v,...}" (labels sorted) -> value.
func samples(t *testing.T, body string) map[string]float64 {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, body)
	}
	out := map[string]float64{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			out[seriesKey(name, m.GetLabel())] = value(mf, m)
		}
	}
	return out
}

func value(mf *dto.MetricFamily, m *dto.Metric) float64 {
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	default:
		return m.GetUntyped().GetValue()
	}
}

func seriesKey(name string, labels []*dto.LabelPair) string {
	parts := make([]string, 0, len(labels))
	for _, l := range labels {
		parts = append(parts, l.GetName()+"="+l.GetValue())
	}
	if len(parts) == 0 {
		return name
	}
	return name + "{" + strings.Join(parts, ",") + "}"
}

// queueKey is the series key of a per-queue sample (labels in sorted order).
func queueKey(metric, host, vhost, name string) string {
	return metric + "{host=" + host + ",name=" + name + ",vhost=" + vhost + "}"
}

func x509Pool(t *testing.T, pemBytes []byte) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("no certificate in PEM")
	}
	return pool
}

// waitLog waits for substr in the exporter's log: output reaches the buffer
// through a pipe, so a line written before a response may arrive after it.
func (p *exporterProc) waitLog(t *testing.T, substr string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.logs.String(), substr) {
		if time.Now().After(deadline) {
			t.Fatalf("log lacks %q:\n%s", substr, p.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func execScript(path string, args ...string) (string, error) {
	out, err := exec.Command(path, args...).CombinedOutput()
	return string(out), err
}

// promtoolCheck runs `promtool check metrics` on an exposition: it must pass
// with no warnings (naming, HELP texts, duplicate families). CI must have
// promtool (scripts/test-deps.sh installs it).
func promtoolCheck(t *testing.T, body string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not installed (scripts/test-deps.sh installs it)")
		}
		t.Log("promtool not installed; skipping promtool check metrics")
		return
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
