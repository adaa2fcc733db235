// Package builtin assembles the sources this exporter ships, one per value
// of a module's source setting.
package builtin

import (
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source/management"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source/plugin"
)

// Sources returns a fresh set: the plugin sources cache what they discover,
// so each process (or test) gets its own.
func Sources() source.Set {
	mgmt := management.Source{}
	// Both plugin sources share discovery and the one-request-per-member
	// gates: a module's source setting must not double the load on a member.
	cluster := &plugin.Cluster{}
	return source.Set{
		config.SourceManagement: mgmt,
		// An answer that cannot be read exactly is never used; the management
		// listing is exact, at its cost, for that scrape.
		config.SourcePrometheus: source.Fallback{First: &plugin.Source{Cluster: cluster}, Then: mgmt, When: source.IsUnreadable},
		config.SourceAuto:       source.Fallback{First: &plugin.Source{Strict: true, Cluster: cluster}, Then: mgmt},
	}
}
