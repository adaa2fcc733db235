// Package prober scrapes one broker per request, blackbox_exporter style: a
// probe gets a context, a target, a module and a fresh registry to record into.
package prober

import (
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/brokerhttp"

	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queueset"
)

// Prober lists the queues of brokers. One serves the whole process, so that
// concurrent probes needing the same listing share one broker request.
type Prober struct {
	// MaxTimeout caps how long one broker request may run, whatever the
	// scrapers waiting for it allow.
	MaxTimeout time.Duration

	flights flights
	members members
}

// listing is one scrape's queues and how they were read.
type listing struct {
	queues  *queueset.QueueSet
	source  config.Source  // management or prometheus: what served this scrape
	members []memberStatus // plugin source: every member, and whether it answered
	// fallback says why source auto (or an unreadable plugin answer) used
	// the management listing instead of the plugin.
	fallback string
}

// complete reports whether every part of the cluster answered.
func (l *listing) complete() bool {
	for _, m := range l.members {
		if !m.up {
			return false
		}
	}
	return true
}

// ProbeQueues lists the queues of target with module's settings and records
// rabbitmq_up and the listing's meta metrics in registry. It returns the queues
// (nil on failure) and whether the listing succeeded.
func (p *Prober) ProbeQueues(ctx context.Context, target brokerhttp.Target, module *config.Module, registry prometheus.Registerer, logger *slog.Logger) (*queueset.QueueSet, bool) {
	labels := prometheus.Labels{"host": target.Hostname}
	up := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "rabbitmq_up", Help: "1 if the queues of this broker were listed in this scrape, 0 if not.", ConstLabels: labels,
	})
	registry.MustRegister(up)

	l, err := p.list(ctx, target, module, logger)
	if err != nil {
		logger.Warn("listing queues failed", "module", module.Name, "rabbitmq_source", module.Source, "err", err)
		return nil, false
	}
	up.Set(1)
	qs := l.queues
	for _, g := range []struct {
		name, help string
		value      int
	}{
		{"rabbitmq_queues", "Queues exported for this broker: every queue the user can see in any vhost, after the module's vhost/queue filters.", qs.Len()},
		{"rabbitmq_queues_missing_counts", "Queues listed without one or more of their counts (e.g. streams in the management listing, queues on a down node, queues without stats yet); the absent counts get no sample.", qs.MissingCounts()},
		{"rabbitmq_queues_duplicates_dropped", "Queues left out because another queue of the listing has the same vhost and name labels (a repeated entry, a queue listed by two members, or names that differ only in bytes that are not valid UTF-8); the first one is exported.", qs.Duplicates()},
	} {
		gauge := prometheus.NewGauge(prometheus.GaugeOpts{Name: g.name, Help: g.help, ConstLabels: labels})
		gauge.Set(float64(g.value))
		registry.MustRegister(gauge)
	}
	source := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "rabbitmq_source_info", ConstLabels: labels,
		Help: "Where this scrape read the queue counts: management (the management API's queue listing) or prometheus (the members' rabbitmq_prometheus plugin)."}, []string{"source"})
	source.WithLabelValues(string(l.source)).Set(1)
	registry.MustRegister(source)
	if len(l.members) > 0 {
		nodeUp := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "rabbitmq_node_up", ConstLabels: labels,
			Help: "1 if this cluster member's rabbitmq_prometheus plugin answered in this scrape, 0 if the member is down, unreachable, serves no plugin or is not allowed; its queues then have no samples."}, []string{"node"})
		for _, m := range l.members {
			v := 0.0
			if m.up {
				v = 1
			}
			nodeUp.WithLabelValues(m.node).Set(v)
		}
		registry.MustRegister(nodeUp)
	}
	if l.fallback != "" {
		logger.Info("read the management listing instead of the plugin", "reason", l.fallback)
	}
	if qs.Duplicates() > 0 {
		logger.Warn("dropped queues whose labels repeat an earlier queue's", "duplicates", qs.Duplicates(), "first", qs.FirstDuplicate())
	}
	for _, m := range l.members {
		if !m.up {
			logger.Warn("cluster member not read; its queues have no samples", "node", m.node, "reason", m.reason)
		}
	}
	logger.Debug("listed queues", "rabbitmq_source", l.source, "queues", qs.Len(), "missing_counts", qs.MissingCounts(), "members", len(l.members))
	return qs, l.complete()
}

// list shares one listing among concurrent probes of the same target with the
// same module, and picks the source.
func (p *Prober) list(ctx context.Context, target brokerhttp.Target, module *config.Module, logger *slog.Logger) (*listing, error) {
	maxRun := p.MaxTimeout
	if module.Timeout > 0 && (maxRun <= 0 || module.Timeout < maxRun) {
		maxRun = module.Timeout
	}
	key := requestKey(target, module)
	return p.flights.do(ctx, key, maxRun, func(ctx context.Context) (*listing, error) {
		if module.Source == config.SourceManagement {
			return listManagement(ctx, target, module)
		}
		l, err := p.listPlugin(ctx, key, target, module, module.Source == config.SourceAuto, logger)
		var ambiguous *errAmbiguous
		switch {
		case err == nil:
			return l, nil
		case ctx.Err() != nil:
			return nil, err
		case errors.As(err, &ambiguous) || module.Source == config.SourceAuto:
			// An answer that cannot be read exactly is never used; the
			// management listing is exact, at its cost, for this scrape.
			l, mErr := listManagement(ctx, target, module)
			if mErr != nil {
				return nil, fmt.Errorf("%v; the management listing failed too: %w", err, mErr)
			}
			l.fallback = err.Error()
			return l, nil
		}
		return nil, err
	})
}

// requestKey identifies what a listing depends on. The module's identity keeps
// two configuration generations (say, different filters or passwords after a
// reload) apart; the password itself is not part of the key.
func requestKey(target brokerhttp.Target, module *config.Module) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%p\x00%s", target, module, module.Name)
	return hex.EncodeToString(h.Sum(nil))
}
