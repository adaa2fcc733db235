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
// a failed listing is used.
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
}

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
type Fallback struct {
	First, Then Source
	When        func(error) bool
}

// List implements Source.
func (f Fallback) List(ctx context.Context, target brokerhttp.Target, module *config.Module, logger *slog.Logger) (*Listing, error) {
	l, err := f.First.List(ctx, target, module, logger)
	switch {
	case err == nil:
		return l, nil
	case ctx.Err() != nil, f.When != nil && !f.When(err):
		return nil, err
	}
	l, thenErr := f.Then.List(ctx, target, module, logger)
	if thenErr != nil {
		// Only the fallback's error is wrapped: callers judge the scrape by it.
		return nil, fmt.Errorf("%v; falling back failed too: %w", err, thenErr) //nolint:errorlint
	}
	l.Fallback = err.Error()
	return l, nil
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
