package main

import (
	"testing"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/fakeapi"
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
