// Package containertest runs the exporter's container image in tests: it
// builds the image the way `make image` does, reads the run commands users are
// shown (README.md's `docker run`, examples/compose/compose.yml's exporter
// service) into a Spec, and starts containers from a Spec through
// scripts/image.sh engine, i.e. the engine and settings the build used.
package containertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Port is the port the image's exporter listens on by default (EXPOSE 9419).
const Port = "9419"

// Engine runs docker or podman as scripts/image.sh picks and configures it.
type Engine struct {
	Root string // repository root
}

// Command is `scripts/image.sh engine args...`.
func (e Engine) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(e.Root, "scripts", "image.sh"), "engine"}, args...)...)
	cmd.Dir = e.Root
	return cmd
}

// Output runs the engine with args and returns its trimmed standard output,
// failing the test (with standard error) when it fails or takes over 2 minutes.
func (e Engine) Output(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := e.Command(ctx, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("engine %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return strings.TrimSpace(string(out))
}

// Build runs `make image` in root and returns the built image's ID (from the
// iid file scripts/image.sh writes, so that a concurrent build elsewhere that
// moves the tags does not change what the test runs), the time it took and its
// output.
func Build(t testing.TB, root string) (id string, took time.Duration, output string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", "image")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	took = time.Since(start)
	if err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(filepath.Join(root, ".build", "image.iid"))
	if err != nil {
		t.Fatalf("make image left no image ID: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(raw)), took, string(out)
}

// Spec is one way of running the exporter container, as documented.
type Spec struct {
	ReadOnly bool
	Env      map[string]string // -e NAME=VALUE
	Mounts   map[string]string // container path -> host file, always read-only
	Args     []string          // exporter arguments after the image
	Image    string            // image reference as documented
	Ports    []string          // published ports as documented (HOST:CONTAINER)
}

// Clone returns a deep copy, for variants of a documented Spec.
func (s Spec) Clone() Spec {
	c := s
	c.Env = make(map[string]string, len(s.Env))
	maps.Copy(c.Env, s.Env)
	c.Mounts = make(map[string]string, len(s.Mounts))
	maps.Copy(c.Mounts, s.Mounts)
	c.Args = append([]string(nil), s.Args...)
	c.Ports = append([]string(nil), s.Ports...)
	return c
}

// PublishesDefaultPort reports whether the Spec publishes the port the
// exporter listens on by default.
func (s Spec) PublishesDefaultPort() bool {
	for _, p := range s.Ports {
		if strings.HasSuffix(p, ":"+Port) {
			return true
		}
	}
	return false
}

// secretEnv are variables whose values stay off the engine's command line: the
// engine takes them from its own environment (-e NAME).
func secretEnv(name string) bool {
	return strings.Contains(name, "PASSWORD") && !strings.HasSuffix(name, "_FILE")
}

// Container is a started container.
type Container struct {
	Name string
	Addr string // host:port the exporter listens on
	eng  Engine
}

// Start runs spec detached from image (an image ID) under a unique name and
// waits until /-/healthy answers 200 (using client, which may add
// credentials). The container is removed when the test ends.
//
// Differences from the documented command, which sandboxes without a working
// container network need: host networking instead of published ports, and
// --web.listen-address on a free loopback port instead of the default :9419.
func Start(t testing.TB, eng Engine, name, image string, spec Spec, client func(*http.Request) (*http.Response, error)) *Container {
	t.Helper()
	addr := FreeAddr(t)
	args := []string{"run", "-d", "--name", name, "--network=host"}
	if spec.ReadOnly {
		args = append(args, "--read-only")
	}
	var env []string
	for _, k := range sortedKeys(spec.Env) {
		if secretEnv(k) {
			args = append(args, "-e", k)
			env = append(env, k+"="+spec.Env[k])
		} else {
			args = append(args, "-e", k+"="+spec.Env[k])
		}
	}
	for _, dst := range sortedKeys(spec.Mounts) {
		args = append(args, "-v", spec.Mounts[dst]+":"+dst+":ro")
	}
	args = append(args, image)
	args = append(args, spec.Args...)
	args = append(args, "--web.listen-address="+addr)

	c := &Container{Name: name, Addr: addr, eng: eng}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, err := eng.Command(ctx, "rm", "-f", name).CombinedOutput(); err != nil {
			t.Logf("removing container %s: %v: %s", name, err, out)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := eng.Command(ctx, args...)
	cmd.Env = append(os.Environ(), env...)
	t.Logf("engine %s", strings.Join(args, " "))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("starting container %s: %v\n%s", name, err, out)
	}

	// Generous: a loaded 2-core machine may start it slowly.
	deadline := time.Now().Add(90 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/-/healthy", nil)
		resp, err := client(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return c
			}
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		if state := c.State(t); state != "running" {
			t.Fatalf("container %s is %s before it became healthy (%v); log:\n%s", name, state, err, c.Logs(t))
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s: /-/healthy not 200 within 90s: %v; log:\n%s", name, err, c.Logs(t))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// State is the container's state (running, exited, ...).
func (c *Container) State(t testing.TB) string {
	t.Helper()
	return c.eng.Output(t, "inspect", "--format", "{{.State.Status}}", c.Name)
}

// Logs returns the container's output so far.
func (c *Container) Logs(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := c.eng.Command(ctx, "logs", c.Name).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("(logs: %v) %s", err, out)
	}
	return string(out)
}

// Stop sends SIGTERM through `stop -t 10` (SIGKILL after 10 s) and returns
// how long stopping took and the exit code.
func (c *Container) Stop(t testing.TB) (time.Duration, int) {
	t.Helper()
	start := time.Now()
	c.eng.Output(t, "stop", "-t", "10", c.Name)
	took := time.Since(start)
	code, err := strconv.Atoi(c.eng.Output(t, "inspect", "--format", "{{.State.ExitCode}}", c.Name))
	if err != nil {
		t.Fatalf("exit code of %s: %v", c.Name, err)
	}
	return took, code
}

// FreeAddr returns a loopback address with a port free at the time of the call.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// ShellWords splits one POSIX shell command line (continuations already
// joined) into words: blanks separate, single quotes are literal, double
// quotes and backslashes quote. Expansions ($PWD) are kept as written.
func ShellWords(line string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		inWord,
		single,
		double bool
	)
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch {
		case single:
			if ch == '\'' {
				single = false
			} else {
				cur.WriteByte(ch)
			}
		case double:
			switch {
			case ch == '"':
				double = false
			case ch == '\\' && i+1 < len(line) && strings.IndexByte(`$"\`+"`", line[i+1]) >= 0:
				i++
				cur.WriteByte(line[i])
			default:
				cur.WriteByte(ch)
			}
		case ch == '\'':
			single, inWord = true, true
		case ch == '"':
			double, inWord = true, true
		case ch == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
			inWord = true
		case ch == ' ' || ch == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case ch == '#' && !inWord:
			i = len(line)
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if single || double {
		return nil, errors.New("unterminated quote")
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
