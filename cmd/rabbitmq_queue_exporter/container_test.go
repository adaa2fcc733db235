package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/containertest"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/scrapetest"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/testbed"
)

const (
	// The largest image the test accepts (the image is about 22 MB).
	maxImageBytes = 25_000_000
	// scripts/testbed.sh's PRIMARY_NODE, for rabbitmqctl.
	primaryNodeName = "rabbit@localhost"
)

// ctrQueueCounts are messages, ready and unacknowledged.
type ctrQueueCounts [3]int64

// TestContainerImage builds the image with `make image` and runs it the ways
// README.md and examples/compose/compose.yml show, against the test bed's
// broker: exact counts through /probe compared with rabbitmqctl, health,
// non-root, read-only, SIGTERM, size and version.
func TestContainerImage(t *testing.T) {
	testbed.Require(t)
	root, err := testbed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	eng := containertest.Engine{Root: root}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readmeSpec, err := containertest.ReadmeRun(string(readme))
	if err != nil {
		t.Fatal(err)
	}
	composeYAML, err := os.ReadFile(filepath.Join(root, "examples", "compose", "compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	compose, err := containertest.ParseCompose(composeYAML)
	if err != nil {
		t.Fatal(err)
	}

	id, took, out := containertest.Build(t, root)
	t.Logf("make image: %v, image %.12s", took.Round(100*time.Millisecond), strings.TrimPrefix(id, "sha256:"))
	for line := range strings.SplitSeq(out, "\n") {
		if strings.Contains(line, "stand-in") {
			t.Log(line)
		}
	}

	t.Run("image", func(t *testing.T) {
		size, err := strconv.ParseInt(eng.Output(t, "image", "inspect", "--format", "{{.Size}}", id), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("image size %.1f MB", float64(size)/1e6)
		if size > maxImageBytes {
			t.Errorf("image is %d bytes, more than %d", size, maxImageBytes)
		}
		if u := eng.Output(t, "image", "inspect", "--format", "{{.Config.User}}", id); u != "nobody" {
			t.Errorf("image user %q, want nobody", u)
		}
		if p := eng.Output(t, "image", "inspect", "--format", "{{json .Config.ExposedPorts}}", id); !strings.Contains(p, containertest.Port+"/tcp") {
			t.Errorf("image exposes %s, want %s/tcp", p, containertest.Port)
		}
		// No network needed: the flag prints and exits.
		v := eng.Output(t, "run", "--rm", "--network=none", id, "--version")
		wantVersion := ctrReadTrimmed(t, filepath.Join(root, "VERSION"))
		rev, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
		if err != nil {
			t.Fatalf("git rev-parse HEAD: %v", err)
		}
		for _, want := range []string{"version " + wantVersion + " ", "revision: " + strings.TrimSpace(string(rev))} {
			if !strings.Contains(v, want) {
				t.Errorf("--version lacks %q:\n%s", want, v)
			}
		}
	})

	b := testbed.Primary(t)
	mgmt, err := url.Parse(b.MgmtURL)
	if err != nil {
		t.Fatal(err)
	}
	vhost := testbed.UniqueName("container-test-")
	b.CreateVhost(t, vhost)
	conn := b.Dial(t, vhost)
	arranged := map[string]ctrQueueCounts{}
	for _, q := range []struct {
		name             string
		kind             string
		publish, unacked int
	}{
		{"ready", testbed.Classic, 5, 0},
		{"held", testbed.Classic, 4, 3},
		{"quorum", testbed.Quorum, 6, 2},
		{"empty", testbed.Classic, 0, 0},
	} {
		name := "ctr." + q.name
		b.DeclareQueue(t, conn, name, q.kind)
		if q.publish > 0 {
			b.Publish(t, conn, name, q.publish)
		}
		if q.unacked > 0 {
			b.HoldUnacked(t, conn, name, q.unacked)
		}
		arranged[name] = ctrQueueCounts{int64(q.publish), int64(q.publish - q.unacked), int64(q.unacked)}
	}
	// Even rabbitmqctl sees a quorum queue's counts a moment after the
	// confirms: wait until it lists what the test arranged.
	want := rabbitmqctlQueues(t, vhost)
	for deadline := time.Now().Add(2 * time.Minute); !maps.Equal(want, arranged); want = rabbitmqctlQueues(t, vhost) {
		if time.Now().After(deadline) {
			t.Fatalf("rabbitmqctl lists %v after 2m, the test arranged %v", want, arranged)
		}
		time.Sleep(time.Second)
	}

	dir := t.TempDir()
	pwFile := ctrWriteFile(t, dir, "rabbitmq-password", b.Password+"\n")
	target := mgmt.Host
	host := mgmt.Hostname()
	httpClient := &http.Client{Timeout: 30 * time.Second}
	plain := httpClient.Do

	// run starts one container of spec and checks what every documented way
	// of running it must give.
	run := func(t *testing.T, spec containertest.Spec, client func(*http.Request) (*http.Response, error), more func(*containertest.Container)) {
		name := testbed.UniqueName("rqe-container-test-")
		c := containertest.Start(t, eng, name, id, spec, client)
		if ro := eng.Output(t, "inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", name); ro != "true" {
			t.Errorf("root filesystem read-only: %s", ro)
		}
		// The process itself, not only the image's USER line.
		status := eng.Output(t, "exec", name, "cat", "/proc/1/status")
		if !strings.Contains(status, "\nUid:\t65534\t65534\t65534\t65534\n") {
			t.Errorf("exporter does not run as uid 65534:\n%s", status)
		}
		waitForProbeCounts(t, c, client, target, host, vhost, want)
		// The broker's state has not moved meanwhile: still the same counts.
		if again := rabbitmqctlQueues(t, vhost); !maps.Equal(again, want) {
			t.Errorf("rabbitmqctl now lists %v, before %v", again, want)
		}
		if more != nil {
			more(c)
		}
		tookStop, code := c.Stop(t)
		t.Logf("stop: %v, exit code %d", tookStop.Round(10*time.Millisecond), code)
		if tookStop > 5*time.Second || code != 0 {
			t.Errorf("SIGTERM: stopped after %v with exit code %d, want within 5s and 0; log:\n%s", tookStop, code, c.Logs(t))
		}
	}

	t.Run("readme", func(t *testing.T) {
		spec := ctrDocumented(t, readmeSpec, "README.md")
		spec.Env["RABBITMQ_HOST"] = target
		spec.Env["RABBITMQ_USER"] = b.User
		spec.Mounts[spec.Env["RABBITMQ_PASSWORD_FILE"]] = pwFile
		run(t, spec, plain, nil)
	})

	t.Run("compose", func(t *testing.T) {
		if err := compose.Check(); err != nil {
			t.Fatal(err)
		}
		spec := ctrDocumented(t, compose.Exporter, "compose.yml")
		spec.Env["RABBITMQ_HOST"] = target
		spec.Env["RABBITMQ_USER"] = b.User
		spec.Mounts[spec.Env["RABBITMQ_PASSWORD_FILE"]] = pwFile
		run(t, spec, plain, nil)
	})

	t.Run("env and web config", func(t *testing.T) {
		spec := readmeSpec.Clone()
		spec.Env["RABBITMQ_HOST"] = target
		spec.Env["RABBITMQ_USER"] = b.User
		delete(spec.Mounts, spec.Env["RABBITMQ_PASSWORD_FILE"])
		delete(spec.Env, "RABBITMQ_PASSWORD_FILE")
		spec.Env["RABBITMQ_PASSWORD"] = b.Password

		webPassword := ctrRandomHex(t)
		hash, err := bcrypt.GenerateFromPassword([]byte(webPassword), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		const webConfig = "/etc/rabbitmq_queue_exporter/web-config.yml"
		spec.Mounts[webConfig] = ctrWriteFile(t, dir, "web-config.yml", "basic_auth_users:\n  prometheus: "+string(hash)+"\n")
		spec.Args = append(spec.Args, "--web.config.file="+webConfig)
		authed := func(req *http.Request) (*http.Response, error) {
			req.SetBasicAuth("prometheus", webPassword)
			return httpClient.Do(req)
		}
		run(t, spec, authed, func(c *containertest.Container) {
			for _, path := range []string{"/-/healthy", "/probe?target=" + url.QueryEscape(target), "/metrics"} {
				resp, err := httpClient.Get("http://" + c.Addr + path)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("GET %s without credentials: HTTP %d, want 401", path, resp.StatusCode)
				}
			}
		})
	})
}

// ctrDocumented checks a documented Spec and returns a copy to adapt.
func ctrDocumented(t *testing.T, s containertest.Spec, where string) containertest.Spec {
	t.Helper()
	if err := s.CheckDocumented(); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	return s.Clone()
}

// rabbitmqctlQueues lists vhost's queues with rabbitmqctl, which reads the
// queues themselves rather than the management API's statistics.
func rabbitmqctlQueues(t *testing.T, vhost string) map[string]ctrQueueCounts {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "rabbitmqctl", "-q", "-n", primaryNodeName, "list_queues", "-p", vhost,
		"--formatter", "json", "name", "messages", "messages_ready", "messages_unacknowledged")
	// RABBITMQ_* settings in the test's environment are for the exporter, not
	// for rabbitmqctl.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RABBITMQ_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("rabbitmqctl list_queues -p %s: %v\n%s", vhost, err, out)
	}
	var rows []struct {
		Name    string `json:"name"`
		Msgs    int64  `json:"messages"`
		Ready   int64  `json:"messages_ready"`
		Unacked int64  `json:"messages_unacknowledged"`
	}
	if err := json.Unmarshal(out, &rows); err != nil {
		t.Fatalf("rabbitmqctl list_queues: %v\n%s", err, out)
	}
	m := make(map[string]ctrQueueCounts, len(rows))
	for _, r := range rows {
		m[r.Name] = ctrQueueCounts{r.Msgs, r.Ready, r.Unacked}
	}
	return m
}

// waitForProbeCounts probes target through the container until its queues of
// vhost are exactly want: the management API's statistics the exporter reads
// lag the queues by up to a stats interval, so a generous cap, then a strict
// comparison.
func waitForProbeCounts(t *testing.T, c *containertest.Container, client func(*http.Request) (*http.Response, error), target, host, vhost string, want map[string]ctrQueueCounts) {
	t.Helper()
	metrics := []string{"rabbitmq_individual_queue_messages", "rabbitmq_individual_queue_messages_ready", "rabbitmq_individual_queue_messages_unacknowledged"}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		req, err := http.NewRequest(http.MethodGet, "http://"+c.Addr+"/probe?target="+url.QueryEscape(target), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client(req)
		if err != nil {
			t.Fatalf("probe: %v", err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		var problem string
		if resp.StatusCode != http.StatusOK {
			problem = fmt.Sprintf("HTTP %d: %.300s", resp.StatusCode, body)
		} else {
			mfs, err := scrapetest.Decode(resp.Header, body)
			if err != nil {
				t.Fatalf("probe answer: %v", err)
			}
			got := map[string]ctrQueueCounts{}
			up := -1.0
			for _, mf := range mfs {
				if mf.GetName() == "rabbitmq_up" && len(mf.GetMetric()) == 1 {
					up = mf.GetMetric()[0].GetGauge().GetValue()
				}
				i := slices.Index(metrics, mf.GetName())
				if i < 0 {
					continue
				}
				for _, m := range mf.GetMetric() {
					labels := map[string]string{}
					for _, l := range m.GetLabel() {
						labels[l.GetName()] = l.GetValue()
					}
					if labels["vhost"] != vhost {
						continue
					}
					if labels["host"] != host {
						t.Fatalf("%s: host label %q, want %q", mf.GetName(), labels["host"], host)
					}
					qc := got[labels["name"]]
					qc[i] = int64(m.GetGauge().GetValue())
					got[labels["name"]] = qc
				}
			}
			if up == 1 && maps.Equal(got, want) {
				return
			}
			problem = fmt.Sprintf("rabbitmq_up %v, queues %v, rabbitmqctl %v", up, got, want)
		}
		if time.Now().After(deadline) {
			t.Fatalf("probe through the container did not match rabbitmqctl within 2m: %s; log:\n%s", problem, c.Logs(t))
		}
		time.Sleep(time.Second)
	}
}

// ctrWriteFile writes a file the container's nobody can read.
func ctrWriteFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode is subject to the umask.
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func ctrReadTrimmed(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func ctrRandomHex(t *testing.T) string {
	t.Helper()
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}
