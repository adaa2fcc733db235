// Package prober scrapes one broker per request, blackbox_exporter style: a
// probe gets a context, a target, a module and a fresh registry to record into.
package prober

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/collector"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
)

// Prober lists the queues of brokers. One serves the whole process, so that
// concurrent probes needing the same listing share one broker request.
type Prober struct {
	// MaxTimeout caps how long one broker request may run, whatever the
	// scrapers waiting for it allow.
	MaxTimeout time.Duration

	flights flights
}

// ProbeQueues lists the queues of target with module's settings and records
// rabbitmq_up and the listing's meta metrics in registry. It returns the queues
// (nil on failure) and whether the listing succeeded.
func (p *Prober) ProbeQueues(ctx context.Context, target config.Target, module *config.Module, registry prometheus.Registerer, logger *slog.Logger) (*collector.QueueSet, bool) {
	labels := prometheus.Labels{"host": target.Hostname}
	up := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "rabbitmq_up", Help: "1 if the queues of this broker were listed in this scrape, 0 if not.", ConstLabels: labels,
	})
	registry.MustRegister(up)

	qs, err := p.list(ctx, target, module)
	if err != nil {
		logger.Warn("listing queues failed", "module", module.Name, "err", err)
		return nil, false
	}
	up.Set(1)
	for _, g := range []struct {
		name, help string
		value      int
	}{
		{"rabbitmq_queues", "Queues exported for this broker: every queue the user can see in any vhost, after the module's vhost/queue filters.", qs.Len()},
		{"rabbitmq_queues_missing_counts", "Queues listed without one or more of their counts (e.g. streams, queues on a down node, queues without stats yet); the absent counts get no sample.", qs.MissingCounts()},
		{"rabbitmq_queues_duplicates_dropped", "Queues left out because another queue of the listing has the same vhost and name labels (a repeated entry, or names that differ only in bytes that are not valid UTF-8); the first one is exported.", qs.Duplicates()},
	} {
		gauge := prometheus.NewGauge(prometheus.GaugeOpts{Name: g.name, Help: g.help, ConstLabels: labels})
		gauge.Set(float64(g.value))
		registry.MustRegister(gauge)
	}
	if qs.Duplicates() > 0 {
		logger.Warn("dropped queues whose labels repeat an earlier queue's", "duplicates", qs.Duplicates(), "first", qs.FirstDuplicate())
	}
	logger.Debug("listed queues", "queues", qs.Len(), "missing_counts", qs.MissingCounts())
	return qs, true
}

// list shares one listing among concurrent probes of the same target with the
// same module.
func (p *Prober) list(ctx context.Context, target config.Target, module *config.Module) (*collector.QueueSet, error) {
	maxRun := p.MaxTimeout
	if module.Timeout > 0 && (maxRun <= 0 || module.Timeout < maxRun) {
		maxRun = module.Timeout
	}
	return p.flights.do(ctx, requestKey(target, module), maxRun, func(ctx context.Context) (*collector.QueueSet, error) {
		return listManagement(ctx, target, module)
	})
}

// requestKey identifies what a listing depends on. The module's identity keeps
// two configuration generations (say, different filters or passwords after a
// reload) apart; the password itself is not part of the key.
func requestKey(target config.Target, module *config.Module) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%p\x00%s", target, module, module.Name)
	return hex.EncodeToString(h.Sum(nil))
}
