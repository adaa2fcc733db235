package main

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/fakeapi"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/testbed"
)

// TestNonReadingClientsDoNotStarveProbes (issue 16, item 2): eight scrapers
// that ask for a large answer and never read it (one per --web.max-requests
// slot, the default 8) neither make a probe of a tiny healthy broker answer
// 503 nor slow down /-/healthy and /metrics; more of them do not raise the
// memory held beyond the bound of twice --web.max-requests listings.
func TestNonReadingClientsDoNotStarveProbes(t *testing.T) {
	const stalled, queues = 8, 100_000
	api := fakeapi.NewHandler(fakeapi.Generate(fakeapi.Options{Queues: queues, Vhosts: 10, StreamEvery: fakeapi.DefaultStreamEvery}), "guest", "guest")
	brokers := startFakeBrokers(t, 2*stalled, api)
	small := startFakeBrokers(t, 1, fakeapi.NewHandler(smallListing(), "guest", "guest"))
	for _, s := range append(brokers.servers, small.servers...) {
		s.Config.SetKeepAlivesEnabled(false)
	}
	p := startExporter(t, []string{"RABBITMQ_HOST=" + small.target(0)}, "--no-metrics.queues", `--probe.allowed-targets=127\.0\.0\.1:\d+`)
	base := baseline(t, p)

	// Distinct brokers: each stalled answer holds its own listing.
	for i := range stalled {
		stalledClient(t, p, "/probe?target="+brokers.target(i))
	}
	waitFor(t, 30*time.Second, func() bool { return api.Requests() == stalled && brokers.open.Load() == 0 })
	held := p.usage(t)
	t.Logf("%d clients not reading their %d-queue answers: exporter %v (at the start %v)", stalled, queues, held, base)

	client := probeClient(30 * time.Second)
	for i := range 3 {
		r := scrape(client, p, "/probe", 10*time.Second, false)
		if err := r.ok(3); err != nil {
			t.Fatalf("probe %d of a healthy 3-queue broker while %d clients stall: %v (after %v)\n%.3000s", i+1, stalled, err, r.elapsed, p.logs)
		}
		t.Logf("probe %d of a healthy 3-queue broker while %d clients stall: answered in %v", i+1, stalled, r.elapsed.Round(time.Millisecond))
	}
	for _, path := range []string{"/-/healthy", "/metrics"} {
		r := scrape(client, p, path, 10*time.Second, false)
		if r.err != nil || r.status != 200 {
			t.Errorf("%s while %d clients stall: %d %v", path, stalled, r.status, r.err)
		}
		t.Logf("%s while %d clients stall: answered in %v", path, stalled, r.elapsed.Round(time.Millisecond))
	}

	// Twice as many stalled clients: writers beyond the limit are cut off
	// to make room, so the listings held stay within the bound.
	for i := stalled; i < 2*stalled; i++ {
		stalledClient(t, p, "/probe?target="+brokers.target(i))
	}
	waitFor(t, 60*time.Second, func() bool { return api.Requests() == 2*stalled && brokers.open.Load() == 0 })
	if err := scrape(client, p, "/probe", 10*time.Second, false).ok(3); err != nil {
		t.Errorf("probe while %d clients stall: %v", 2*stalled, err)
	}
	// What one stalled answer held, measured with the first eight; half as
	// much again for answers cut off but not yet collected.
	listing := (held.heapInuse - base.heapInuse) / stalled
	after := p.usage(t)
	t.Logf("%d stalled clients: heap in use %.1f MiB (%.1f MiB with %d; %.1f MiB at the start)", 2*stalled, after.heapInuse/(1<<20), held.heapInuse/(1<<20), stalled, base.heapInuse/(1<<20))
	if bound := base.heapInuse + 1.5*2*8*listing; after.heapInuse > bound {
		t.Errorf("heap in use %.1f MiB with %d stalled clients, want at most %.1f MiB (2 x 8 listings of %.1f MiB and slack)",
			after.heapInuse/(1<<20), 2*stalled, bound/(1<<20), listing/(1<<20))
	}
}

// TestSlowBrokersDoNotStarveFastOne (issue 16, item 9): probes of many slow
// brokers, more than --web.max-requests, keep coming; a fast broker probed
// all the while with a short scrape timeout always answers, and so does a
// fast broker first probed in the middle of it. In the full lane: it runs
// 12 s of wall clock, and web's TestSlotsKeptFromSlowBrokers holds the slot
// pool to the same rule in the hermetic lane.
func TestSlowBrokersDoNotStarveFastOne(t *testing.T) {
	testbed.RequireFull(t, "12 s of probes of slow brokers")
	const slow, latency = 12, 2 * time.Second
	duration := 10 * time.Second
	slowAPI := fakeapi.NewHandler(smallListing(), "guest", "guest")
	slowAPI.SetLatency(latency)
	slowBrokers := startFakeBrokers(t, slow, slowAPI)
	fast := startFakeBrokers(t, 2, fakeapi.NewHandler(smallListing(), "guest", "guest"))
	p := startExporter(t, []string{"RABBITMQ_HOST=" + fast.target(0)}, "--no-metrics.queues", `--probe.allowed-targets=127\.0\.0\.1:\d+`)

	client := probeClient(30 * time.Second)
	if err := scrape(client, p, "/probe?target="+fast.target(0), 2*time.Second, false).ok(3); err != nil {
		t.Fatalf("first probe of the fast broker: %v", err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var slowOK, slowRefused, slowOther atomic.Int64
	for i := range slow {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := scrape(client, p, "/probe?target="+slowBrokers.target(i), 10*time.Second, false)
				switch {
				case r.ok(3) == nil:
					slowOK.Add(1)
				case r.status == 503:
					slowRefused.Add(1)
				default:
					slowOther.Add(1)
				}
			}
		})
	}
	type result struct {
		elapsed time.Duration
		err     error
	}
	var mu sync.Mutex
	results := map[int][]result{}
	fastLoop := func(i int, after time.Duration) {
		time.Sleep(after)
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			r := scrape(client, p, "/probe?target="+fast.target(i), 2*time.Second, false)
			mu.Lock()
			results[i] = append(results[i], result{r.elapsed, r.ok(3)})
			mu.Unlock()
		}
	}
	wg.Go(func() { fastLoop(0, 0) })
	wg.Go(func() { fastLoop(1, duration/2) }) // new while the slow ones hold their slots
	time.Sleep(duration)
	close(stop)
	wg.Wait()

	t.Logf("%d slow brokers (%v each) probed for %v: %d answered, %d refused (503), %d other", slow, latency, duration, slowOK.Load(), slowRefused.Load(), slowOther.Load())
	if slowOK.Load() == 0 {
		t.Errorf("no probe of a slow broker succeeded")
	}
	for i := range 2 {
		rs := results[i]
		var times []time.Duration
		failed := 0
		for _, r := range rs {
			times = append(times, r.elapsed)
			if r.err != nil {
				failed++
				if failed <= 3 {
					t.Errorf("fast broker %d: %v after %v", i, r.err, r.elapsed)
				}
			}
		}
		if len(rs) < 3 {
			t.Fatalf("fast broker %d probed only %d times", i, len(rs))
		}
		slices.Sort(times)
		t.Logf("fast broker %d: %d probes, %d failed; answered in %v median, %v at most", i, len(rs), failed,
			times[len(times)/2].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond))
	}
}
