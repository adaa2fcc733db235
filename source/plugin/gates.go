package plugin

import (
	"context"
	"fmt"
	"sync"
)

// gates let one request at a time reach each plugin endpoint, whatever
// the number of scrapes, modules or targets that read it: concurrent
// scrapes of a cluster with a hung member then wait for the one request
// already stuck there (until their own member deadline) instead of each
// opening another.
type gates struct {
	mu sync.Mutex
	m  map[string]*gate
}

type gate struct {
	ch    chan struct{}
	users int // holding or waiting; the entry goes when none are left
}

// acquire waits for endpoint's gate until ctx ends, and returns the
// function that lets the next one in.
func (g *gates) acquire(ctx context.Context, endpoint string) (release func(), err error) {
	g.mu.Lock()
	if g.m == nil {
		g.m = map[string]*gate{}
	}
	e := g.m[endpoint]
	if e == nil {
		e = &gate{ch: make(chan struct{}, 1)}
		g.m[endpoint] = e
	}
	e.users++
	g.mu.Unlock()
	select {
	case e.ch <- struct{}{}:
		return func() {
			<-e.ch
			g.leave(endpoint, e)
		}, nil
	case <-ctx.Done():
		g.leave(endpoint, e)
		return nil, fmt.Errorf("timed out waiting for an earlier read of its plugin, which has not answered either: %w", context.Cause(ctx))
	}
}

func (g *gates) leave(endpoint string, e *gate) {
	g.mu.Lock()
	e.users--
	if e.users == 0 {
		delete(g.m, endpoint)
	}
	g.mu.Unlock()
}
