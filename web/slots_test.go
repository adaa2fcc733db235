package web

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"
)

// learn gives key a class, as a listing of that duration would.
func learn(t *testing.T, p *slotPool, key string, listing time.Duration) {
	t.Helper()
	tk, ok := p.acquire(context.Background(), key)
	if !ok {
		t.Fatalf("no slot for %s to learn its class", key)
	}
	tk.listed(listing)
	tk.done()
}

// tryAcquire takes a slot for key if one is free by the rules, else nil.
func tryAcquire(p *slotPool, key string) *slotTicket {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.admit(key, time.Now())
}

// TestSlotsSharedPerListing: probes of one target and module share a slot.
func TestSlotsSharedPerListing(t *testing.T) {
	p := newSlotPool(1)
	a1, a2 := tryAcquire(p, "a"), tryAcquire(p, "a")
	if a1 == nil || a2 == nil || a1.hold != a2.hold {
		t.Fatal("two probes of one listing do not share its slot")
	}
	if tryAcquire(p, "b") != nil {
		t.Fatal("another listing got a slot beyond the limit")
	}
	a1.done()
	if tryAcquire(p, "b") != nil {
		t.Fatal("the slot was freed while a probe still shared it")
	}
	a2.done()
	if b := tryAcquire(p, "b"); b == nil {
		t.Fatal("the slot was not freed by its last probe")
	}
}

// TestSlotsKeptFromSlowBrokers: of 8 slots, known-slow listings take at
// most 6, new ones 7, and a known-fast one always finds the last.
func TestSlotsKeptFromSlowBrokers(t *testing.T) {
	p := newSlotPool(8)
	learn(t, p, "fast", time.Millisecond)
	for i := range 10 {
		learn(t, p, fmt.Sprintf("slow%d", i), 2*slowListing)
	}
	var held []*slotTicket
	for i := range 10 {
		if tk := tryAcquire(p, fmt.Sprintf("slow%d", i)); tk != nil {
			held = append(held, tk)
		}
	}
	if len(held) != 6 {
		t.Fatalf("known-slow listings got %d of 8 slots, want 6", len(held))
	}
	if tryAcquire(p, "new1") == nil {
		t.Fatal("a new listing found no slot beside 6 slow ones")
	}
	if tryAcquire(p, "new2") != nil {
		t.Fatal("new listings took the last slot, kept for known-fast ones")
	}
	if tryAcquire(p, "fast") == nil {
		t.Fatal("a known-fast listing found no slot")
	}
	// A known-fast listing that runs long counts as slow while it runs.
	q := newSlotPool(4)
	learn(t, q, "fast", time.Millisecond)
	learn(t, q, "slow", 2*slowListing)
	long := tryAcquire(q, "fast")
	long.hold.start = time.Now().Add(-2 * slowListing)
	if tryAcquire(q, "new") == nil {
		t.Fatal("a new listing found no slot")
	}
	if tryAcquire(q, "slow") != nil {
		t.Fatal("a known-slow listing got a slot beside two slow-running ones (limit 4-2)")
	}
	// The class follows the last listing.
	for _, tk := range held {
		tk.done()
	}
	learn(t, p, "slow0", time.Millisecond)
	if !p.isFast("slow0", time.Now()) {
		t.Error("a target whose last listing was quick is still known slow")
	}
}

// TestReaderBoundAnswersLeaveTheirSlots: an answer whose scraper has not
// taken data for stalledWrite gives its slot to a waiting probe; beyond
// size reader-bound answers, the one stalled longest is cut off.
func TestReaderBoundAnswersLeaveTheirSlots(t *testing.T) {
	p := newSlotPool(2)
	stall := func(key string, d time.Duration) *slotTicket {
		tk := tryAcquire(p, key)
		if tk == nil {
			t.Fatalf("no slot for %s", key)
		}
		aw := tk.writeTo(httptest.NewRecorder())
		aw.since.Store(time.Now().Add(-d).UnixNano())
		return tk
	}
	a, b := stall("a", 3*stalledWrite), stall("b", 2*stalledWrite)
	// Their listings were slow: once out of their slots they are known
	// slow, and no slot is kept for known-fast targets below.
	a.listed(2 * slowListing)
	b.listed(2 * slowListing)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, ok := p.acquire(ctx, "c")
	if !ok || !a.detached || !b.detached {
		t.Fatalf("reader-bound answers kept their slots: got one %v, a detached %v, b %v", ok, a.detached, b.detached)
	}
	// c and d are reader-bound too, and there is no room left among the
	// reader-bound: the one stalled longest there is cut off, and room
	// made once it leaves.
	c.listed(2 * slowListing)
	c.writeTo(httptest.NewRecorder()).since.Store(time.Now().Add(-4 * stalledWrite).UnixNano())
	stall("d", 2*stalledWrite)
	got := make(chan bool, 1)
	go func() { _, ok := p.acquire(ctx, "e"); got <- ok }()
	waitUntil(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return a.cut })
	if b.cut {
		t.Fatal("cut off b, stalled for less time than a")
	}
	if !a.done() {
		t.Error("a's done does not report it was cut off")
	}
	if !<-got {
		t.Fatal("no slot once the cut-off answer left")
	}
	if !c.detached {
		t.Error("c kept its slot")
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
