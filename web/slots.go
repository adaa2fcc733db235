package web

import (
	"context"
	"net/http"
	"sort"
	"sync"
	"time"
)

// Probe slots: what --web.max-requests limits, per endpoint.
//
// A slot covers the exporter's work on one listing: the broker request,
// the listing in memory, and writing the answer while the scraper takes
// it. Concurrent probes of the same target with the same module share one
// broker request (source.Lister), and here one slot.
//
// Scrapers that stop reading do not keep slots. An answer whose writes have
// waited on its scraper for stalledWrite in all is reader-bound: when a
// probe waits for a slot, reader-bound answers give theirs back and finish
// under their write deadline (--web.write-timeout) among at most size
// answers; when those are all taken, the one waiting longest on its scraper
// is cut off first. So the listings in memory stay within twice size, the
// second half only for scrapers that stopped reading.
//
// Slow brokers do not take every slot. A listing is slow once it has taken
// slowListing; a target and module whose last listing was slow (or whose
// slot is held longer) is known slow, one whose last was quicker known
// fast, any other new. Slots not held for known-fast targets are at most
// size-1 (while any target is known fast), so a known-fast broker always
// finds one; known-slow ones hold at most size-reserve, so a new broker
// finds one too.
const (
	slowListing  = time.Second
	stalledWrite = time.Second
	// slotRecheck is how often a probe waiting for a slot looks for
	// reader-bound answers.
	slotRecheck = 100 * time.Millisecond
	// maxKnownTargets bounds the memory of which targets were slow.
	maxKnownTargets = 10_000
	// knownFor is how long a target's class is remembered without a probe.
	knownFor = time.Hour
)

// slotReserve is how many of size slots known-slow listings cannot take.
func slotReserve(size int) int {
	switch {
	case size <= 1:
		return 0
	case size < 4:
		return 1
	}
	return max(2, size/4)
}

type slotPool struct {
	size, reserve int

	mu          sync.Mutex
	held        map[string]*slotHold
	readerBound map[*slotTicket]struct{} // answers written without a slot
	known       map[string]knownTarget
	knownFast   int           // entries of known that are fast
	changed     chan struct{} // closed when a slot or a reader-bound place frees
}

// slotHold is one key's slot and the probes sharing it.
type slotHold struct {
	tickets map[*slotTicket]struct{}
	start   time.Time
	fast    bool          // its target was known fast when the slot was taken
	longest time.Duration // of its probes' listings, for the next class
}

type knownTarget struct {
	slow bool
	seen time.Time
}

// slotTicket is one probe's claim: a share of its key's slot, then
// possibly a reader-bound place instead.
type slotTicket struct {
	pool   *slotPool
	key    string
	hold   *slotHold
	writer *answerWriter // once the answer is being written
	// guarded by pool.mu
	detached bool // moved to readerBound, the slot given back
	cut      bool // cut off to make room for another reader-bound answer
}

func newSlotPool(size int) *slotPool {
	return &slotPool{size: size, reserve: slotReserve(size), held: map[string]*slotHold{},
		readerBound: map[*slotTicket]struct{}{}, known: map[string]knownTarget{}, changed: make(chan struct{})}
}

// acquire waits for a share of key's slot until ctx ends. A nil pool
// admits everything.
func (p *slotPool) acquire(ctx context.Context, key string) (*slotTicket, bool) {
	if p == nil {
		return &slotTicket{}, true
	}
	var recheck *time.Ticker
	defer func() {
		if recheck != nil {
			recheck.Stop()
		}
	}()
	for {
		p.mu.Lock()
		now := time.Now()
		t := p.admit(key, now)
		var cut []*answerWriter
		if t == nil {
			cut = p.detachReaderBound(now)
			t = p.admit(key, now)
		}
		changed := p.changed
		p.mu.Unlock()
		for _, w := range cut {
			// Its Write returns at once with a timeout error, and its
			// handler gives the place back.
			_ = http.NewResponseController(w.ResponseWriter).SetWriteDeadline(time.Now())
		}
		if t != nil {
			return t, true
		}
		if recheck == nil {
			recheck = time.NewTicker(slotRecheck)
		}
		select {
		case <-changed:
		case <-recheck.C:
		case <-ctx.Done():
			return nil, false
		}
	}
}

// admit gives a ticket for key's slot (shared, or a free one) if the rules
// allow; nil if not.
func (p *slotPool) admit(key string, now time.Time) *slotTicket {
	h := p.held[key]
	if h == nil {
		if !p.room(key, now) {
			return nil
		}
		h = &slotHold{tickets: map[*slotTicket]struct{}{}, start: now, fast: p.isFast(key, now)}
		p.held[key] = h
	}
	t := &slotTicket{pool: p, key: key, hold: h}
	h.tickets[t] = struct{}{}
	return t
}

// room tells whether key may take a free slot.
func (p *slotPool) room(key string, now time.Time) bool {
	if len(p.held) >= p.size {
		return false
	}
	if p.size == 1 || p.isFast(key, now) {
		return true
	}
	notFast := 0
	for _, h := range p.held {
		if !h.fast || now.Sub(h.start) >= slowListing {
			notFast++
		}
	}
	limit := p.size // new, while no target is known fast
	if k, ok := p.known[key]; ok && now.Sub(k.seen) <= knownFor {
		limit = p.size - p.reserve // known slow
	} else if p.knownFast > 0 {
		limit = p.size - 1 // new: one slot stays for the known-fast targets
	}
	return notFast < limit
}

func (p *slotPool) isFast(key string, now time.Time) bool {
	k, ok := p.known[key]
	return ok && !k.slow && now.Sub(k.seen) <= knownFor
}

// detachReaderBound moves the answers that have waited on their scrapers
// for stalledWrite out of their slots, as far as there is room among the
// reader-bound ones; where there is none, it marks the one waiting longest
// there to be cut off, and returns those writers.
func (p *slotPool) detachReaderBound(now time.Time) (cut []*answerWriter) {
	var bound []*slotTicket
	for _, h := range p.held {
		for t := range h.tickets {
			if t.writer != nil && t.writer.blocked(now) >= stalledWrite {
				bound = append(bound, t)
			}
		}
	}
	sort.Slice(bound, func(i, j int) bool { return bound[i].writer.blocked(now) > bound[j].writer.blocked(now) })
	for _, t := range bound {
		if len(p.readerBound) >= p.size {
			if victim := p.longestBlocked(now); victim != nil {
				victim.cut = true
				cut = append(cut, victim.writer)
			}
			return cut
		}
		t.detached = true
		p.readerBound[t] = struct{}{}
		p.leave(t, now)
	}
	return cut
}

// longestBlocked is the reader-bound answer waiting longest on its scraper
// that is not being cut off already.
func (p *slotPool) longestBlocked(now time.Time) *slotTicket {
	var victim *slotTicket
	for t := range p.readerBound {
		if !t.cut && (victim == nil || t.writer.blocked(now) > victim.writer.blocked(now)) {
			victim = t
		}
	}
	return victim
}

// leave takes t out of its slot, freeing the slot with its last probe.
func (p *slotPool) leave(t *slotTicket, now time.Time) {
	h := t.hold
	delete(h.tickets, t)
	if len(h.tickets) > 0 {
		return
	}
	delete(p.held, t.key)
	if len(p.known) >= maxKnownTargets {
		p.forget(now)
	}
	p.setKnown(t.key, knownTarget{slow: h.longest >= slowListing, seen: now})
	p.broadcast()
}

func (p *slotPool) broadcast() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// listed records how long t's listing took: the target's next class.
func (t *slotTicket) listed(d time.Duration) {
	if t.pool == nil {
		return
	}
	t.pool.mu.Lock()
	t.hold.longest = max(t.hold.longest, d)
	t.pool.mu.Unlock()
}

// writer returns what t's answer is to be written to.
func (t *slotTicket) writeTo(w http.ResponseWriter) *answerWriter {
	aw := &answerWriter{ResponseWriter: w}
	if t.pool != nil {
		t.pool.mu.Lock()
		t.writer = aw
		t.pool.mu.Unlock()
	}
	return aw
}

// done gives back t's slot share or reader-bound place; it reports
// whether t's answer was cut off to make room.
func (t *slotTicket) done() (cut bool) {
	p := t.pool
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if t.detached {
		delete(p.readerBound, t)
		p.broadcast()
		return t.cut
	}
	p.leave(t, time.Now())
	return false
}

// forget drops expired classes and, if that is not enough, a tenth of the
// others at random: a target forgotten is new again, which still leaves a
// slot for known-fast ones.
func (p *slotPool) forget(now time.Time) {
	for k, v := range p.known {
		if now.Sub(v.seen) > knownFor {
			p.unsetKnown(k)
		}
	}
	drop := len(p.known) - maxKnownTargets*9/10
	for k := range p.known {
		if drop <= 0 {
			break
		}
		p.unsetKnown(k)
		drop--
	}
}

func (p *slotPool) setKnown(key string, k knownTarget) {
	p.unsetKnown(key)
	p.known[key] = k
	if !k.slow {
		p.knownFast++
	}
}

func (p *slotPool) unsetKnown(key string) {
	if old, ok := p.known[key]; ok {
		delete(p.known, key)
		if !old.slow {
			p.knownFast--
		}
	}
}
