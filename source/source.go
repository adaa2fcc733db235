// Package source lists a broker's queues. A Source is one way of reading
// them (the management API's listing, the members' rabbitmq_prometheus
// plugin, or one falling back to another); a module names the one it uses,
// and a Lister shares one listing among concurrent probes of the same broker.
package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/brokerhttp"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queueset"
)

// Source lists the queues of one broker with a module's settings. Nothing of
// a failed listing is used, but for the exact part a PartialError holds,
// which a Fallback serves when its other source fails too.
type Source interface {
	List(ctx context.Context, target brokerhttp.Target, module *config.Module, logger *slog.Logger) (*Listing, error)
}

// Set maps a module's source setting to the Source that serves it.
type Set map[config.Source]Source

// Listing is one scrape's queues and how they were read.
type Listing struct {
	Queues *queueset.QueueSet
	Source config.Source // what served this scrape: management or prometheus
	// Members are the cluster members a source read one by one, and whether
	// each answered; empty where the cluster was read as a whole.
	Members []Member
	// Fallback says why this listing came from a fallback source.
	Fallback string
	// FallbackFailed says why a fallback source could not replace this
	// incomplete listing (see PartialError), which is served instead.
	FallbackFailed string
}

// PartialError is a source's failure to list the whole broker when it did
// list a part of it exactly: every cluster member's queues but those of the
// members Listing reports as not up. A source that must be complete
// (source auto's plugin reading) returns it instead of failing outright, so
// that a Fallback whose other source fails too, or does not finish in time,
// can answer with the members that were read rather than with nothing.
type PartialError struct {
	Listing *Listing
	Err     error
}

func (e *PartialError) Error() string { return e.Err.Error() }
func (e *PartialError) Unwrap() error { return e.Err }

// Member is one cluster member's outcome in a scrape.
type Member struct {
	Node   string
	Up     bool
	Reason string // why not up
}

// Complete reports whether every part of the cluster answered.
func (l *Listing) Complete() bool {
	for _, m := range l.Members {
		if !m.Up {
			return false
		}
	}
	return true
}

// Fallback lists through First and, when that fails in a way When accepts
// (nil: any way but the scrape's end), through Then.
//
// When First's failure is a PartialError, Then gets only PartialShare of the
// time left and First's partial listing is the answer should Then fail or
// run out of its share: a source that waits for the same missing part (the
// management API waits for a cluster member that stops or starts) must not
// take the parts that were read down with it.
type Fallback struct {
	First, Then Source
	When        func(error) bool
	// PartialShare is the part of the time left that Then may take after
	// a PartialError; the rest is kept to answer with the partial listing
	// (0: DefaultPartialShare).
	PartialShare float64
}

// DefaultPartialShare leaves a fifth of the time for answering with a
// partial listing, as a plugin listing leaves it for merging and answering.
const DefaultPartialShare = 0.8

// errFallbackShare ends a fallback that would leave no time to answer with
// the partial listing it is meant to replace.
var errFallbackShare = fmt.Errorf("timed out: the fallback listing did not finish within its share of the scrape timeout: %w", context.DeadlineExceeded)

// List implements Source.
func (f Fallback) List(ctx context.Context, target brokerhttp.Target, module *config.Module, logger *slog.Logger) (*Listing, error) {
	l, err := f.First.List(ctx, target, module, logger)
	switch {
	case err == nil:
		return l, nil
	case ctx.Err() != nil, f.When != nil && !f.When(err):
		return nil, err
	}
	partial, _ := errors.AsType[*PartialError](err)
	thenCtx := ctx
	if partial != nil && partial.Listing != nil {
		var cancel context.CancelFunc
		thenCtx, cancel = f.partialDeadline(ctx)
		defer cancel()
	}
	l, thenErr := f.Then.List(thenCtx, target, module, logger)
	if thenErr == nil {
		l.Fallback = err.Error()
		return l, nil
	}
	if partial != nil && partial.Listing != nil && ctx.Err() == nil {
		// Only this scrape's readings: the members read, the others
		// reported not up, so the scrape is not a success.
		p := partial.Listing
		p.FallbackFailed = thenErr.Error()
		return p, nil
	}
	// Only the fallback's error is wrapped: callers judge the scrape by it.
	return nil, fmt.Errorf("%v; falling back failed too: %w", err, thenErr) //nolint:errorlint
}

// partialDeadline is ctx ending at Then's share of the time left, for
// Then's requests and for the deadlines it plans (Deadline).
func (f Fallback) partialDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline, ok := Deadline(ctx)
	if !ok {
		return context.WithCancel(ctx)
	}
	share := f.PartialShare
	if share <= 0 || share > 1 {
		share = DefaultPartialShare
	}
	end := time.Now().Add(time.Duration(float64(time.Until(deadline)) * share))
	return context.WithDeadlineCause(context.WithValue(ctx, deadlineKey{}, end), end, errFallbackShare)
}

// Lister picks each module's source and shares one listing among concurrent
// probes of the same target with the same module. One serves the process.
type Lister struct {
	Sources Set
	// MaxTimeout caps how long one listing may run, whatever the scrapers
	// waiting for it allow.
	MaxTimeout time.Duration

	flights flights
}

// List returns the listing of target with module's settings.
func (l *Lister) List(ctx context.Context, target brokerhttp.Target, module *config.Module, logger *slog.Logger) (*Listing, error) {
	src, ok := l.Sources[module.Source]
	if !ok {
		return nil, fmt.Errorf("no source %q", module.Source)
	}
	maxRun := l.MaxTimeout
	if module.Timeout > 0 && (maxRun <= 0 || module.Timeout < maxRun) {
		maxRun = module.Timeout
	}
	return l.flights.do(ctx, Key(target, module), maxRun, func(ctx context.Context) (*Listing, error) {
		return src.List(ctx, target, module, logger)
	})
}

// Key identifies what a listing depends on. The module's identity keeps two
// configuration generations (say, different filters or passwords after a
// reload) apart; the password itself is not part of the key.
func Key(target brokerhttp.Target, module *config.Module) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%p\x00%s", target, module, module.Name)
	return hex.EncodeToString(h.Sum(nil))
}

// ErrUnreadable marks an answer that cannot be read exactly: its counts are
// never used, and a source that can read the broker another way should.
var ErrUnreadable = errors.New("answer cannot be read exactly")

// IsUnreadable reports whether err is (or wraps) ErrUnreadable.
func IsUnreadable(err error) bool { return errors.Is(err, ErrUnreadable) }

// NewQueueSet starts the set of one listing of target, its memory bounded by
// the same limit as a broker's answer, so that an answer of tiny queue
// objects cannot cost a multiple of the limit.
func NewQueueSet(target brokerhttp.Target, module *config.Module) *queueset.QueueSet {
	limit := module.MaxBodyBytes
	if limit <= 0 {
		limit = config.DefaultMaxBodyBytes
	}
	return queueset.NewQueueSetOf(target.Hostname, limit, module.QueueFields())
}
