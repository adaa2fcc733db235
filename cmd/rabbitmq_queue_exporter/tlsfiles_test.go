package main

import (
	"encoding/pem"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/fakeapi"
)

// replaceFile puts what create makes at path in one rename, as secret
// mounts and certificate tools rotate files.
func replaceFile(t *testing.T, path string, create func(tmp string) error) {
	t.Helper()
	tmp := path + ".new"
	os.Remove(tmp)
	if err := create(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// procThreads is the number of OS threads of process pid.
func procThreads(t *testing.T, pid int) int64 {
	t.Helper()
	return procStatus(t, pid, "Threads") >> 10 // procStatus reads kB
}

// TestTLSFilesReadBounded (issue 16, item 5): the CA file is re-read for
// new connections (so a rotated certificate is used without a reload), and
// every such read goes through the checks made at start-up: a FIFO put in
// its place fails the probe at once with the reason and blocks no thread,
// a file far over the 16 MiB bound fails it without being read, and once a
// good file is back the probes succeed again.
func TestTLSFilesReadBounded(t *testing.T) {
	broker := httptest.NewTLSServer(fakeapi.NewHandler(smallListing(), "guest", "guest"))
	t.Cleanup(broker.Close)
	// Each probe dials anew, so each reads the files.
	broker.Config.SetKeepAlivesEnabled(false)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	writeCA(t, ca) // signed nothing the broker serves
	right := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: broker.Certificate().Raw})

	p := startExporter(t, []string{"RABBITMQ_HOST=https://" + hostOf(broker), "RABBITMQ_USER=guest", "RABBITMQ_PASSWORD=guest",
		"RABBITMQ_TLS_CA_FILE=" + ca}, "--no-metrics.queues")
	pid := p.cmd.Process.Pid
	client := probeClient(30 * time.Second)
	probe := func(step string, success string, logSubs ...string) probeResult {
		t.Helper()
		logStart := len(p.logs.String())
		r := scrape(client, p, "/probe", 5*time.Second, false)
		if r.err != nil || r.status != 200 || r.meta["probe_success"] != success {
			t.Fatalf("%s: want 200 with probe_success %s, got %d %v %v\n%s", step, success, r.status, r.err, r.meta, p.logs.String()[logStart:])
		}
		if len(logSubs) > 0 {
			if _, ok := waitLogLine(p, logStart, append([]string{`msg="listing queues failed"`}, logSubs...)); !ok {
				t.Errorf("%s: no log line with %q:\n%s", step, logSubs, p.logs.String()[logStart:])
			}
		}
		t.Logf("%s: probe_success %s in %v", step, success, r.elapsed.Round(time.Millisecond))
		return r
	}
	probe("an unrelated CA", "0", "certificate signed by unknown authority")
	replaceFile(t, ca, func(tmp string) error { return os.WriteFile(tmp, right, 0o600) })
	probe("the broker's CA written in its place, no reload", "1")

	replaceFile(t, ca, func(tmp string) error { return unix.Mkfifo(tmp, 0o600) })
	threads := procThreads(t, pid)
	const fifoProbes = 6
	for i := range fifoProbes {
		probe(fmt.Sprintf("a FIFO as the CA file (%d)", i+1), "0", "not a regular file")
	}
	// A read blocked on a FIFO holds its OS thread until a writer comes.
	if grew := procThreads(t, pid) - threads; grew >= fifoProbes/2 {
		t.Errorf("%d probes with a FIFO as the CA file left %d more OS threads", fifoProbes, grew)
	}

	replaceFile(t, ca, func(tmp string) error { return os.WriteFile(tmp, right, 0o600) })
	probe("the CA back", "1")

	const huge = 256 << 20
	replaceFile(t, ca, func(tmp string) error {
		f, err := os.Create(tmp)
		if err != nil {
			return err
		}
		if _, err := f.Write(right); err != nil { // a valid start: only the size is wrong
			return err
		}
		if err := f.Truncate(huge); err != nil {
			return err
		}
		return f.Close()
	})
	hwm := procStatus(t, pid, "VmHWM")
	probe("a 256 MiB CA file", "0", "larger than")
	if grew := procStatus(t, pid, "VmHWM") - hwm; grew > 32<<20 {
		t.Errorf("a probe with a %s CA file raised the peak RSS by %s", mib(huge), mib(grew))
	}

	replaceFile(t, ca, func(tmp string) error { return os.WriteFile(tmp, right, 0o600) })
	probe("the CA back again", "1")
	if strings.Contains(p.logs.String(), "guest") && strings.Contains(p.logs.String(), "password=guest") {
		t.Error("the password reached the log")
	}
}
