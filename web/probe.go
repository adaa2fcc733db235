// Package web serves /probe and /metrics, blackbox_exporter style: each
// request gets a fresh registry, its probe a context, a target and a module;
// the answer is written in the format the scraper negotiated.
package web

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/brokerhttp"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queueset"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source"
)

// probeQueues lists the queues of target with module's settings and records
// rabbitmq_up and the listing's meta metrics in registry. It returns the queues
// (nil on failure) and whether every part of the broker answered.
func probeQueues(ctx context.Context, lister *source.Lister, target brokerhttp.Target, module *config.Module, registry prometheus.Registerer, logger *slog.Logger) (*queueset.QueueSet, bool) {
	labels := prometheus.Labels{"host": target.Hostname}
	up := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "rabbitmq_up", Help: "1 if the queues of this broker were listed in this scrape, 0 if not.", ConstLabels: labels,
	})
	registry.MustRegister(up)

	l, err := lister.List(ctx, target, module, logger)
	if err != nil {
		logger.Warn("listing queues failed", "module", module.Name, "rabbitmq_source", module.Source, "err", err)
		return nil, false
	}
	up.Set(1)
	qs := l.Queues
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
	sourceInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "rabbitmq_source_info", ConstLabels: labels,
		Help: "Where this scrape read the queue counts: management (the management API's queue listing) or prometheus (the members' rabbitmq_prometheus plugin)."}, []string{"source"})
	sourceInfo.WithLabelValues(string(l.Source)).Set(1)
	registry.MustRegister(sourceInfo)
	if len(l.Members) > 0 {
		nodeUp := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "rabbitmq_node_up", ConstLabels: labels,
			Help: "1 if this cluster member's rabbitmq_prometheus plugin answered in this scrape, 0 if the member is down, unreachable, did not answer in time, serves no plugin or is not allowed; its queues then have no samples."}, []string{"node"})
		for _, m := range l.Members {
			v := 0.0
			if m.Up {
				v = 1
			}
			nodeUp.WithLabelValues(m.Node).Set(v)
		}
		registry.MustRegister(nodeUp)
	}
	if l.Fallback != "" {
		logger.Info("read the management listing instead of the plugin", "reason", l.Fallback)
	}
	if l.FallbackFailed != "" {
		logger.Warn("the management listing failed too; answering with the members whose plugin was read", "err", l.FallbackFailed)
	}
	if qs.Duplicates() > 0 {
		logger.Warn("dropped queues whose labels repeat an earlier queue's", "duplicates", qs.Duplicates(), "first", qs.FirstDuplicate())
	}
	for _, m := range l.Members {
		if !m.Up {
			logger.Warn("cluster member not read; its queues have no samples", "node", m.Node, "reason", m.Reason)
		}
	}
	logger.Debug("listed queues", "rabbitmq_source", l.Source, "queues", qs.Len(), "missing_counts", qs.MissingCounts(), "members", len(l.Members))
	return qs, l.Complete()
}
