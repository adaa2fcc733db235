package management

import (
	"context"
	"errors"
	"log/slog"
	"runtime"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/brokerhttp"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queueset"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source"
)

// Source reads the management API's queue listing: one request to the
// target. Nothing of it is used unless the whole listing arrived.
type Source struct{}

// List implements source.Source.
func (Source) List(ctx context.Context, target brokerhttp.Target, module *config.Module, _ *slog.Logger) (*source.Listing, error) {
	client := Client{HTTP: module.HTTP, MaxBodyBytes: module.MaxBodyBytes, Fields: module.Fields}
	qs := source.NewQueueSet(target, module)
	filter := &module.Filter
	all := filter.Empty()
	err := client.ListQueues(ctx, target, module.Credentials, func(q *Queue) error {
		if !all && !filter.Keep(q.Vhost, q.Name) {
			return nil
		}
		return qs.Add(q.Vhost, q.Name, &q.Counts, q.Has)
	})
	if err != nil {
		if errors.Is(err, queueset.ErrTooLarge) {
			// The set is garbage now, up to the limit in size; without a
			// collection the next such listing would double the peak.
			qs = nil
			runtime.GC()
		}
		return nil, err
	}
	return &source.Listing{Queues: qs, Source: config.SourceManagement}, qs.Finish()
}
