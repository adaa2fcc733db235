package source

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// flights shares one broker request among concurrent probes that need the same
// listing. The request serves the probes waiting for it: it runs until the
// latest of their deadlines (never beyond its own cap) and is cancelled as soon
// as the last of them gives up. So a scraper with a short timeout cannot fail
// the others, and one with an absurdly long one cannot keep a hung request
// alive for later scrapers to inherit.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

type flight struct {
	done   chan struct{}
	res    *Listing
	err    error
	cancel context.CancelCauseFunc

	// guarded by flights.mu
	waiters  int
	deadline time.Time // the latest waiter's, capped at limit
	limit    time.Time
	timer    *time.Timer
}

var (
	errAllLeft      = errors.New("every scrape waiting for this listing gave up")
	errTimedOut     = fmt.Errorf("timed out before the listing completed (scrape timeout reached): %w", context.DeadlineExceeded)
	errNoDeadline   = errors.New("a shared request needs a deadline")
	errFlightCapped = fmt.Errorf("timed out before the listing completed (the longest probe timeout reached): %w", context.DeadlineExceeded)
)

// do returns the result of fn for key, running fn at most once at a time per
// key. ctx must have a deadline; maxRun caps how long fn may run in all.
func (f *flights) do(ctx context.Context, key string, maxRun time.Duration, fn func(context.Context) (*Listing, error)) (*Listing, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return nil, errNoDeadline
	}
	f.mu.Lock()
	if f.m == nil {
		f.m = map[string]*flight{}
	}
	fl := f.m[key]
	if fl == nil {
		now := time.Now()
		fl = &flight{done: make(chan struct{}), limit: now.Add(maxRun)}
		var runCtx context.Context
		fl.deadline = minTime(deadline, fl.limit)
		runCtx, fl.cancel = context.WithCancelCause(context.WithValue(context.WithoutCancel(ctx), deadlineKey{}, fl.deadline))
		fl.timer = time.AfterFunc(fl.deadline.Sub(now), func() { f.expire(fl) })
		f.m[key] = fl
		go f.run(runCtx, key, fl, fn)
	} else if d := minTime(deadline, fl.limit); d.After(fl.deadline) {
		fl.deadline = d
		fl.timer.Reset(time.Until(d))
	}
	fl.waiters++
	f.mu.Unlock()

	select {
	case <-fl.done:
		f.leave(fl, false)
		return fl.res, fl.err
	case <-ctx.Done():
		f.leave(fl, true)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, errTimedOut
		}
		return nil, fmt.Errorf("cancelled: %w", context.Cause(ctx))
	}
}

func (f *flights) run(ctx context.Context, key string, fl *flight, fn func(context.Context) (*Listing, error)) {
	res, err := fn(ctx)
	f.mu.Lock()
	if f.m[key] == fl {
		delete(f.m, key)
	}
	fl.timer.Stop()
	f.mu.Unlock()
	fl.cancel(nil)
	fl.res, fl.err = res, err
	close(fl.done)
}

// leave drops a waiter; the last one to give up cancels the request.
func (f *flights) leave(fl *flight, gaveUp bool) {
	f.mu.Lock()
	fl.waiters--
	last := fl.waiters == 0
	if gaveUp && last {
		// A later probe must not join a request nobody waits for any more.
		for k, v := range f.m {
			if v == fl {
				delete(f.m, k)
			}
		}
	}
	f.mu.Unlock()
	if gaveUp && last {
		fl.cancel(errAllLeft)
	}
}

// expire ends the request at the latest waiter's deadline, unless a waiter
// who joined meanwhile moved it later.
func (f *flights) expire(fl *flight) {
	f.mu.Lock()
	if d := time.Until(fl.deadline); d > 0 {
		fl.timer.Reset(d)
		f.mu.Unlock()
		return
	}
	capped := !fl.deadline.Before(fl.limit)
	f.mu.Unlock()
	if capped {
		fl.cancel(errFlightCapped)
	} else {
		fl.cancel(errTimedOut)
	}
}

type deadlineKey struct{}

// Deadline is when the listing running in ctx is due to end: the deadline
// of the scrapes waiting for it when it started (a scrape joining later may
// move it later, never earlier), or ctx's own deadline outside a shared
// request. A source that must answer in part before then (a cluster whose
// members answer one by one) plans its own deadlines from it.
func Deadline(ctx context.Context) (time.Time, bool) {
	if d, ok := ctx.Value(deadlineKey{}).(time.Time); ok {
		return d, true
	}
	return ctx.Deadline()
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
