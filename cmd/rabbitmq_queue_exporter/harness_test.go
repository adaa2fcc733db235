package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/scrapetest"
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

type exporterProc struct {
	cmd    *exec.Cmd
	addr   string // host:port it listens on
	scheme string
	logs   *scrapetest.LockedBuffer
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
	p := &exporterProc{addr: addr, scheme: "http", logs: &scrapetest.LockedBuffer{}, done: make(chan error, 1),
		client: &http.Client{Timeout: 30 * time.Second}}
	logLevel := []string{"--log.level=debug"} // unless args choose one
	for _, a := range args {
		if strings.HasPrefix(a, "--web.config.file=") {
			p.scheme = "https"
			p.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
		}
		if strings.HasPrefix(a, "--log.level=") {
			logLevel = nil
		}
	}
	p.cmd = exec.Command(exporterBinary, append(append([]string{"--web.listen-address=" + addr}, logLevel...), args...)...)
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	p.cmd.Stdout = p.logs
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { _ = p.stop(t) })
	// Polled: a busy machine can take a while to start the process.
	deadline := time.Now().Add(time.Minute)
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
	maps.Copy(req.Header, header)
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

// samples decodes the answer by its Content-Type and Content-Encoding.
func (r response) samples(t *testing.T) scrapetest.Samples {
	t.Helper()
	return scrapetest.Parse(t, r.header, []byte(r.body))
}

// queueKey is the series key of a per-queue sample.
func queueKey(metric, host, vhost, name string) string {
	return scrapetest.Key(metric, "host", host, "vhost", vhost, "name", name)
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
