package prober

import (
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/brokerhttp"

	"context"
	"errors"
	"runtime"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queueset"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source/management"
)

// listManagement reads the queue listing of the management API into a
// QueueSet. Nothing of it is used unless the whole listing arrived.
func listManagement(ctx context.Context, target brokerhttp.Target, module *config.Module) (*listing, error) {
	client := management.Client{HTTP: module.HTTP, MaxBodyBytes: module.MaxBodyBytes}
	qs := queueset.NewQueueSet(target.Hostname, maxQueueSetBytes(module))
	filter := &module.Filter
	all := filter.Empty()
	err := client.ListQueues(ctx, target, module.Credentials, func(q *management.Queue) error {
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
	return &listing{queues: qs, source: config.SourceManagement}, qs.Finish()
}

// maxQueueSetBytes bounds a listing's memory by the same limit as its body, so
// that a body of tiny queue objects cannot cost a multiple of the limit.
func maxQueueSetBytes(module *config.Module) int64 {
	if module.MaxBodyBytes > 0 {
		return module.MaxBodyBytes
	}
	return management.DefaultMaxBodyBytes
}
