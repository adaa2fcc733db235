package config

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/brokerhttp"
)

func get(t *testing.T, m *Module, approved brokerhttp.Target, rawURL string) (string, error) {
	t.Helper()
	ctx := brokerhttp.WithApprovedTarget(context.Background(), approved)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := m.HTTP.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// connCounter counts a server's open connections.
type connCounter struct {
	mu   sync.Mutex
	open map[net.Conn]bool
}

func (c *connCounter) track(conn net.Conn, state http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch state {
	case http.StateNew:
		c.open[conn] = true
	case http.StateClosed, http.StateHijacked:
		delete(c.open, conn)
	}
}

func (c *connCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.open)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestIdleConnectionLimits: concurrent requests to one broker leave at most
// brokerhttp.MaxIdleConnsPerHost connections open, and a retired generation closes its
// idle connections once its last probe is done.
func TestIdleConnectionLimits(t *testing.T) {
	cc := &connCounter{open: map[net.Conn]bool{}}
	release := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	srv.Config.ConnState = cc.track
	srv.Start()
	defer srv.Close()
	g, err := Load(&EnvFlags{Host: srv.URL}, "", BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	target := mustTarget(t, srv.URL)
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			if _, err := get(t, g.Env, target, srv.URL+"/x"); err != nil {
				t.Error(err)
			}
		})
	}
	waitFor(t, "6 connections", func() bool { return cc.count() == 6 })
	close(release)
	wg.Wait()
	waitFor(t, "idle connections beyond the per-host cap to close", func() bool { return cc.count() == brokerhttp.MaxIdleConnsPerHost })

	g.Acquire()
	g.retire()
	waitFor(t, "retired generation to close its idle connections", func() bool { return cc.count() == 0 })
	// A probe still running on the retired generation leaves its connection
	// idle afterwards; the last Release closes it.
	if _, err := get(t, g.Env, target, srv.URL+"/x"); err != nil {
		t.Fatal(err)
	}
	if cc.count() != 1 {
		t.Fatalf("%d connections open after a request", cc.count())
	}
	g.Release()
	waitFor(t, "the last release to close the idle connection", func() bool { return cc.count() == 0 })
}
