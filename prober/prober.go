// Package prober scrapes one broker per request, blackbox_exporter style: a
// probe gets a context, a target, a module and a fresh registry to record into.
package prober

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/collector"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/management"
)

// Module is an auth module ready to probe with: its validated configuration
// and an HTTP client carrying its TLS settings.
type Module struct {
	*config.Module
	Client *management.Client
}

// NewModule builds the management client for a module.
func NewModule(m *config.Module, maxBodyBytes int64, userAgent string) *Module {
	return &Module{Module: m, Client: &management.Client{
		HTTP:         management.NewHTTPClient(m.TLS),
		MaxBodyBytes: maxBodyBytes,
		UserAgent:    userAgent,
	}}
}

// Modules is one generation of configuration, swapped whole on reload.
type Modules struct {
	Env    *Module // credentials from flags/env, used when no auth_module is given
	ByName map[string]*Module
}

// Prober lists queues, sharing one in-flight broker request among concurrent
// probes of the same target with the same credentials.
type Prober struct {
	group singleflight.Group
}

// ProbeQueues lists the queues of target with module's credentials and records
// rabbitmq_up, rabbitmq_queues and rabbitmq_queues_missing_counts in registry.
// It returns the queues (nil on failure) and whether the listing succeeded.
func (p *Prober) ProbeQueues(ctx context.Context, target config.Target, module *Module, registry prometheus.Registerer, logger *slog.Logger) (*collector.QueueSet, bool) {
	labels := prometheus.Labels{"host": target.Hostname}
	up := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "rabbitmq_up", Help: "1 if the management API listed the queues of this broker in this scrape, 0 if not.", ConstLabels: labels,
	})
	registry.MustRegister(up)

	qs, err := p.list(ctx, target, module)
	if err != nil {
		logger.Warn("listing queues failed", "module", module.Name, "err", err)
		return nil, false
	}
	up.Set(1)
	queues := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "rabbitmq_queues", Help: "Queues exported for this broker: every queue the user can see in any vhost, after the module's vhost/queue filters.", ConstLabels: labels,
	})
	missing := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "rabbitmq_queues_missing_counts", ConstLabels: labels,
		Help: "Queues listed without one or more of messages, messages_ready, messages_unacknowledged (e.g. streams, queues on a down node, queues without stats yet); the absent counts get no sample.",
	})
	registry.MustRegister(queues, missing)
	queues.Set(float64(qs.Len()))
	missing.Set(float64(qs.MissingCounts()))
	logger.Debug("listed queues", "queues", qs.Len(), "missing_counts", qs.MissingCounts())
	return qs, true
}

// list shares one broker request among concurrent callers with the same key.
// The shared request runs until the first caller's deadline; a caller that
// gives up earlier stops waiting without cancelling it for the others.
func (p *Prober) list(ctx context.Context, target config.Target, module *Module) (*collector.QueueSet, error) {
	key := requestKey(target, module)
	deadline, hasDeadline := ctx.Deadline()
	ch := p.group.DoChan(key, func() (interface{}, error) {
		reqCtx := context.WithoutCancel(ctx)
		var cancel context.CancelFunc
		if hasDeadline {
			reqCtx, cancel = context.WithDeadline(reqCtx, deadline)
		} else {
			reqCtx, cancel = context.WithCancel(reqCtx)
		}
		defer cancel()
		qs := collector.NewQueueSet(target.Hostname, module.Client.MaxBodyBytes)
		filter := &module.Filter
		all := filter.Empty()
		err := module.Client.ListQueues(reqCtx, target, module.Credentials, func(q *management.Queue) error {
			if !all && !filter.Keep(q.Vhost, q.Name) {
				return nil
			}
			return qs.Add(q.Vhost, q.Name, &q.Counts, q.Has)
		})
		if err != nil {
			return nil, err
		}
		return qs, qs.Finish()
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*collector.QueueSet), nil
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, errors.New("timed out before the listing completed (scrape timeout reached)")
		}
		return nil, fmt.Errorf("cancelled: %w", context.Cause(ctx))
	}
}

// requestKey identifies what a listing depends on. The password enters only as
// a hash, so results are never shared across different credentials and the
// secret is not kept in the key; the module's identity keeps two configuration
// generations (say, different filters after a reload) apart.
func requestKey(target config.Target, module *Module) string {
	h := sha256.New()
	for _, part := range []string{target.String(), fmt.Sprintf("%p", module.Module), module.Name, module.Credentials.Username, string(module.Credentials.Password)} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}
