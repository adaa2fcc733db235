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
const (
	stalledWrite = time.Second
	// slotRecheck is how often a probe waiting for a slot looks for
	// reader-bound answers.
	slotRecheck = 100 * time.Millisecond
)

type slotPool struct {
	size int

	mu          sync.Mutex
	held        map[string]*slotHold
	readerBound map[*slotTicket]struct{} // answers written without a slot
	changed     chan struct{}            // closed when a slot or a reader-bound place frees
}

// slotHold is one key's slot and the probes sharing it.
type slotHold struct {
	tickets map[*slotTicket]struct{}
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
	return &slotPool{size: size, held: map[string]*slotHold{}, readerBound: map[*slotTicket]struct{}{}, changed: make(chan struct{})}
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
		if len(p.held) >= p.size {
			return nil
		}
		h = &slotHold{tickets: map[*slotTicket]struct{}{}}
		p.held[key] = h
	}
	t := &slotTicket{pool: p, key: key, hold: h}
	h.tickets[t] = struct{}{}
	return t
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
	p.broadcast()
}

func (p *slotPool) broadcast() {
	close(p.changed)
	p.changed = make(chan struct{})
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
