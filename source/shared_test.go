package source

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queueset"
)

// slowListing returns a listing after d, or the context's cause if it ends first.
func slowListing(calls *atomic.Int32, ended chan<- error, d time.Duration) func(context.Context) (*Listing, error) {
	return func(ctx context.Context) (*Listing, error) {
		calls.Add(1)
		select {
		case <-time.After(d):
			qs := queueset.NewQueueSet("h", 0)
			return &Listing{Queues: qs}, qs.Finish()
		case <-ctx.Done():
			if ended != nil {
				ended <- context.Cause(ctx)
			}
			return nil, context.Cause(ctx)
		}
	}
}

func TestSharedRequestServesItsWaiters(t *testing.T) {
	t.Run("a short deadline fails only its own caller", func(t *testing.T) {
		var f flights
		var calls atomic.Int32
		fn := slowListing(&calls, nil, 400*time.Millisecond)
		var wg sync.WaitGroup
		errs := make([]error, 5)
		for i := range errs {
			wg.Go(func() {
				timeout := 5 * time.Second
				if i == 0 {
					timeout = 100 * time.Millisecond // this one starts the request
				} else {
					time.Sleep(20 * time.Millisecond)
				}
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				defer cancel()
				_, errs[i] = f.do(ctx, "k", time.Minute, fn)
			})
		}
		wg.Wait()
		if !errors.Is(errs[0], context.DeadlineExceeded) || !strings.Contains(errs[0].Error(), "timed out") {
			t.Fatalf("short caller: %v", errs[0])
		}
		for i, err := range errs[1:] {
			if err != nil {
				t.Errorf("caller %d with a long deadline failed: %v", i+1, err)
			}
		}
		if calls.Load() != 1 {
			t.Fatalf("%d listings, want 1", calls.Load())
		}
	})

	t.Run("the request ends when the last waiter leaves", func(t *testing.T) {
		var f flights
		var calls atomic.Int32
		ended := make(chan error, 2)
		fn := slowListing(&calls, ended, time.Hour) // a hung broker
		ctx, cancel := context.WithTimeout(context.Background(), 24*time.Hour)
		done := make(chan error)
		go func() { _, err := f.do(ctx, "k", 48*time.Hour, fn); done <- err }()
		time.Sleep(50 * time.Millisecond)
		cancel() // the scraper with a one-day timeout goes away
		if err := <-done; err == nil {
			t.Fatal("cancelled caller got no error")
		}
		select {
		case cause := <-ended:
			if !errors.Is(cause, errAllLeft) {
				t.Fatalf("request ended with %v", cause)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("the hung request outlived its last waiter")
		}
		// A later probe starts afresh instead of inheriting the hung request.
		ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel2()
		_, _ = f.do(ctx2, "k", time.Minute, fn)
		if calls.Load() != 2 {
			t.Fatalf("%d listings, want a new one for the later probe", calls.Load())
		}
	})

	t.Run("a later waiter extends the request to its deadline", func(t *testing.T) {
		var f flights
		var calls atomic.Int32
		fn := slowListing(&calls, nil, 300*time.Millisecond)
		first := make(chan error)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			_, err := f.do(ctx, "k", time.Minute, fn)
			first <- err
		}()
		time.Sleep(30 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if _, err := f.do(ctx, "k", time.Minute, fn); err != nil {
			t.Fatalf("second waiter: %v", err)
		}
		if err := <-first; err == nil {
			t.Fatal("first waiter should have timed out")
		}
		if calls.Load() != 1 {
			t.Fatalf("%d listings, want 1", calls.Load())
		}
	})

	t.Run("no waiter keeps a request beyond its cap", func(t *testing.T) {
		var f flights
		var calls atomic.Int32
		ended := make(chan error, 1)
		fn := slowListing(&calls, ended, time.Hour)
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		start := time.Now()
		_, err := f.do(ctx, "k", 200*time.Millisecond, fn)
		if err == nil || time.Since(start) > 5*time.Second {
			t.Fatalf("err %v after %v", err, time.Since(start))
		}
		if cause := <-ended; !errors.Is(cause, errFlightCapped) {
			t.Fatalf("request ended with %v", cause)
		}
	})
}
