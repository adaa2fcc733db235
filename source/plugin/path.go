package plugin

import (
	"strings"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
)

// pluginPath is the plugin's per-object endpoint for the default fields,
// asking for the one family group that holds the queue depths.
const pluginPath = "/metrics/detailed?family=" + queue.GroupCoarse

// RequestPath is the request path for the fields fs: only the family groups
// their rows name, each once, so the plugin renders nothing else (and
// queue_coarse_metrics beside a lone queue_consumer_count: see
// queue.FieldSet.PluginGroups).
func RequestPath(fs queue.FieldSet) string {
	if fs.IsDefault() {
		return pluginPath
	}
	return "/metrics/detailed?family=" + strings.Join(fs.PluginGroups(), "&family=")
}
