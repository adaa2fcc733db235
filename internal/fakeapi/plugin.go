package fakeapi

import (
	"bytes"
	"strconv"
)

// PluginStyle selects how a generated rabbitmq_prometheus answer writes
// label values and which families surround the queue families.
type PluginStyle string

const (
	// PluginRaw is what 3.10.8 answers to
	// /metrics/detailed?family=queue_coarse_metrics (recorded from the test
	// broker): queue and vhost names unescaped, then rabbitmq_build_info and
	// rabbitmq_identity_info, then the telemetry summaries.
	PluginRaw PluginStyle = "raw"
	// PluginEscaped is what 4.1 and later answer, rendered from the
	// v4.3.5 sources (prometheus_rabbitmq_core_metrics_collector and
	// prometheus.erl 6.1.1's prometheus_text_format): names escaped, then
	// rabbitmq_detailed_queue_info, build_info, identity_info, telemetry.
	PluginEscaped PluginStyle = "escaped"
	// PluginEscaped3 is what 3.12.11 to 3.13.x answer: names escaped (the
	// v3.13.7 collector with prometheus.erl 4.11.0), the families around them
	// as in 3.10.
	PluginEscaped3 PluginStyle = "escaped-3"
)

// escapes tells whether the style escapes label values.
func (s PluginStyle) escapes() bool { return s != PluginRaw }

// PluginQueue is one row of the plugin's queue_coarse_metrics table.
type PluginQueue struct {
	Vhost, Name                          string
	Ready, Unacked, Messages, Reductions int64
	// Type is the queue_info type label in PluginEscaped answers ("classic"
	// when empty).
	Type string
}

// PluginInfo is the member's identity in the answer.
type PluginInfo struct {
	RabbitMQVersion, ClientVersion, ErlangVersion string
	Node, Cluster                                 string
	// NoBuildInfo leaves rabbitmq_build_info out.
	NoBuildInfo bool
}

// DefaultPluginInfo is what the test broker reports (raw) or what a 4.2.x
// node would (escaped).
func DefaultPluginInfo(style PluginStyle) PluginInfo {
	switch style {
	case PluginEscaped:
		return PluginInfo{RabbitMQVersion: "4.2.3", ClientVersion: "6.1.1", ErlangVersion: "27.3.4", Node: "rabbit@fake", Cluster: "fake"}
	case PluginEscaped3:
		return PluginInfo{RabbitMQVersion: "3.13.7", ClientVersion: "4.11.0", ErlangVersion: "26.2.5", Node: "rabbit@fake", Cluster: "fake"}
	}
	return PluginInfo{RabbitMQVersion: "3.10.8", ClientVersion: "4.9.1", ErlangVersion: "25.2.3", Node: "rabbit@fake", Cluster: "fake"}
}

// PluginFamilies are the queue_coarse_metrics families in the order the
// plugin writes them, with their TYPE and HELP.
var PluginFamilies = [4]struct{ Name, Type, Help string }{
	{"rabbitmq_detailed_queue_messages_ready", "gauge", "Messages ready to be delivered to consumers"},
	{"rabbitmq_detailed_queue_messages_unacked", "gauge", "Messages delivered to consumers but not yet acknowledged"},
	{"rabbitmq_detailed_queue_messages", "gauge", "Sum of ready and unacknowledged messages - total queue depth"},
	{"rabbitmq_detailed_queue_process_reductions_total", "counter", "Total number of queue process reductions"},
}

// RenderPlugin writes the answer a member hosting queues would give.
func RenderPlugin(style PluginStyle, queues []PluginQueue, info PluginInfo) []byte {
	size := 64 * 1024
	for _, q := range queues {
		size += 4 * (len(q.Vhost) + len(q.Name) + 90)
	}
	b := make([]byte, 0, size)
	for i, f := range PluginFamilies {
		b = appendPrologue(b, f.Name, f.Type, f.Help)
		for _, q := range queues {
			v := [...]int64{q.Ready, q.Unacked, q.Messages, q.Reductions}[i]
			b = appendPluginSample(b, style, f.Name, []byte(q.Vhost), []byte(q.Name), v)
		}
	}
	return appendPluginTail(b, style, queues, info)
}

// GeneratePlugin renders the plugin answer describing the same queues and
// counts as Generate(o): fakeapi.QueueName(i) in VhostName(i % Vhosts).
// Streams (o.StreamEvery) are left out, as management listings give them
// no counts. Reductions are made up.
func GeneratePlugin(o Options, style PluginStyle) []byte {
	nv := max(o.Vhosts, 1)
	vh := make([][]byte, nv)
	for v := range vh {
		vh[v] = []byte(VhostName(v))
	}
	b := make([]byte, 0, o.Queues*4*100+64*1024)
	var name []byte
	for fi, f := range PluginFamilies {
		b = appendPrologue(b, f.Name, f.Type, f.Help)
		for i := range o.Queues {
			if !o.HasCounts(i) {
				continue
			}
			name = appendQueueName(name[:0], i)
			m, r, u := Counts(i)
			v := [...]int64{r, u, m, 5000 + int64(mix(uint64(i))%1_000_000)}[fi]
			b = appendPluginSample(b, style, f.Name, vh[i%nv], name, v)
		}
	}
	var queues []PluginQueue
	if style == PluginEscaped {
		queues = make([]PluginQueue, 0, o.Queues)
		for i := range o.Queues {
			if o.HasCounts(i) {
				queues = append(queues, PluginQueue{Vhost: string(vh[i%nv]), Name: QueueName(i)})
			}
		}
	}
	return appendPluginTail(b, style, queues, DefaultPluginInfo(style))
}

func appendPrologue(b []byte, name, typ, help string) []byte {
	b = append(b, "# TYPE "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, typ...)
	b = append(b, "\n# HELP "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, help...)
	return append(b, '\n')
}

// appendPluginSample writes NAME{vhost="…",queue="…"} VALUE as the plugin
// pre-renders it: vhost first, values raw or escaped.
func appendPluginSample(b []byte, style PluginStyle, family string, vhost, name []byte, v int64) []byte {
	b = append(b, family...)
	b = append(b, `{vhost="`...)
	b = appendLabelValue(b, style, vhost)
	b = append(b, `",queue="`...)
	b = appendLabelValue(b, style, name)
	b = append(b, `"} `...)
	b = strconv.AppendInt(b, v, 10)
	return append(b, '\n')
}

// appendLabelValue escapes as prometheus_text_format:escape_label_value
// does (backslash, double quote, line feed) in the escaped style.
func appendLabelValue(b []byte, style PluginStyle, v []byte) []byte {
	if !style.escapes() || !bytes.ContainsAny(v, "\\\"\n") {
		return append(b, v...)
	}
	for _, c := range v {
		switch c {
		case '\\', '"':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		default:
			b = append(b, c)
		}
	}
	return b
}

func appendPluginTail(b []byte, style PluginStyle, queues []PluginQueue, info PluginInfo) []byte {
	esc := func(b []byte, s string) []byte { return appendLabelValue(b, PluginEscaped, []byte(s)) }
	if style == PluginEscaped {
		b = appendPrologue(b, "rabbitmq_detailed_queue_info", "gauge", "A metric with a constant '1' value and labels that provide some queue details")
		for _, q := range queues {
			typ := q.Type
			if typ == "" {
				typ = "classic"
			}
			b = append(b, `rabbitmq_detailed_queue_info{vhost="`...)
			b = esc(b, q.Vhost)
			b = append(b, `",queue="`...)
			b = esc(b, q.Name)
			b = append(b, `",queue_type="rabbit_`...)
			b = append(b, typ...)
			b = append(b, `_queue",membership="leader"} 1`+"\n"...)
		}
	}
	if !info.NoBuildInfo {
		b = appendPrologue(b, "rabbitmq_build_info", "untyped", "RabbitMQ & Erlang/OTP version info")
		b = append(b, `rabbitmq_build_info{rabbitmq_version="`...)
		b = esc(b, info.RabbitMQVersion)
		b = append(b, `",prometheus_plugin_version="`...)
		b = esc(b, info.RabbitMQVersion)
		b = append(b, `",prometheus_client_version="`...)
		b = esc(b, info.ClientVersion)
		b = append(b, `",erlang_version="`...)
		b = esc(b, info.ErlangVersion)
		b = append(b, "\"} 1\n"...)
	}
	b = appendPrologue(b, "rabbitmq_identity_info", "untyped", "RabbitMQ node & cluster identity info")
	b = append(b, `rabbitmq_identity_info{rabbitmq_node="`...)
	b = esc(b, info.Node)
	b = append(b, `",rabbitmq_cluster="`...)
	b = esc(b, info.Cluster)
	b = append(b, `",rabbitmq_cluster_permanent_id="rabbitmq-cluster-id-fake"`...)
	if style == PluginEscaped {
		b = append(b, `,rabbitmq_endpoint="detailed"`...)
	}
	b = append(b, "} 1\n"...)
	b = appendPrologue(b, "telemetry_scrape_size_bytes", "summary", "Scrape size, not encoded")
	b = append(b, `telemetry_scrape_size_bytes_count{registry="detailed",content_type="text/plain; version=0.0.4"} 1`+"\n"...)
	b = append(b, `telemetry_scrape_size_bytes_sum{registry="detailed",content_type="text/plain; version=0.0.4"} 1855`+"\n"...)
	b = appendPrologue(b, "telemetry_scrape_duration_seconds", "summary", "Scrape duration")
	b = append(b, `telemetry_scrape_duration_seconds_count{registry="detailed",content_type="text/plain; version=0.0.4"} 1`+"\n"...)
	b = append(b, `telemetry_scrape_duration_seconds_sum{registry="detailed",content_type="text/plain; version=0.0.4"} 0.002441`+"\n"...)
	if style != PluginEscaped {
		b = appendPrologue(b, "telemetry_scrape_encoded_size_bytes", "summary", "Scrape size, encoded")
	}
	// prometheus_text_format ends every answer with an empty line.
	return append(b, '\n')
}
