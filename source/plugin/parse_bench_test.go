package plugin

import (
	"bytes"
	"regexp"
	"testing"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/benchutil"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/fakeapi"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queueset"
)

// nopSink measures the parser alone.
type nopSink struct{ n int }

func (s *nopSink) Set(vhost, name []byte, field int, v int64) (bool, error) { s.n++; return false, nil }

// BenchmarkParse parses a 100k-queue answer into a QueueSet (what the
// exporter will do) and into a sink that only counts (the parser alone).
// On this shared machine read cpu-ns/queue and cpu-MB/s: wall time mostly
// measures the neighbours.
func BenchmarkParse(b *testing.B) {
	const queues = 100_000
	o := fakeapi.Options{Queues: queues, Vhosts: 10}
	for _, style := range []fakeapi.PluginStyle{fakeapi.PluginRaw, fakeapi.PluginEscaped} {
		body := fakeapi.GeneratePlugin(o, style)
		for _, sink := range []string{"queueset", "nop", "queueset+keep"} {
			b.Run(string(style)+"/"+sink, func(b *testing.B) {
				var keep func(vhost, name []byte) bool
				if sink == "queueset+keep" {
					// What the exporter's include/exclude settings cost per sample.
					vh, excl := regexp.MustCompile(`^(?:/|prod|staging|analytics)$`), regexp.MustCompile(`^(?:amq\.gen-.*)$`)
					keep = func(vhost, name []byte) bool { return vh.Match(vhost) && !excl.Match(name) }
				}
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				cpu := benchutil.CPUTime()
				for b.Loop() {
					var dst Sink = &nopSink{}
					if sink != "nop" {
						dst = queueset.NewQueueSet("rabbit-1.example.com", 0)
					}
					res, err := Parse(bytes.NewReader(body), dst, keep, Limits{})
					if err != nil || res.Samples+res.Rejected != 3*queues {
						b.Fatalf("%v %+v", err, res)
					}
				}
				reportCPU(b, cpu, queues, len(body))
			})
		}
	}
}

// BenchmarkSkipFamily times the lines of a family that is not ours (the
// reductions family: a quarter of the body), which only get their prefix
// checked.
func BenchmarkSkipFamily(b *testing.B) {
	body := fakeapi.GeneratePlugin(fakeapi.Options{Queues: 100_000, Vhosts: 10}, fakeapi.PluginRaw)
	start := bytes.Index(body, []byte("# TYPE rabbitmq_detailed_queue_process_reductions_total"))
	end := bytes.Index(body, []byte("# TYPE rabbitmq_build_info"))
	block := body[start:end]
	b.SetBytes(int64(len(block)))
	b.ReportAllocs()
	p := newParser(&nopSink{}, nil, Limits{}, queue.Fields())
	defer p.release()
	lines := bytes.SplitAfter(block, []byte("\n"))
	cpu := benchutil.CPUTime()
	for b.Loop() {
		p.seen = map[string]struct{}{}
		for _, l := range lines[:len(lines)-1] {
			if err := p.line(l[:len(l)-1]); err != nil {
				b.Fatal(err)
			}
		}
	}
	reportCPU(b, cpu, 0, len(block))
}

// reportCPU reports CPU time per queue and bytes per CPU second.
func reportCPU(b *testing.B, start time.Duration, queues, size int) {
	d := benchutil.CPUTime() - start
	if d <= 0 || b.N == 0 {
		return
	}
	perOp := float64(d.Nanoseconds()) / float64(b.N)
	if queues > 0 {
		b.ReportMetric(perOp/float64(queues), "cpu-ns/queue")
	}
	b.ReportMetric(float64(size)/perOp*1e3, "cpu-MB/s")
}

// BenchmarkParseFields parses 100k-queue answers for field groups beyond
// the depths (the families the chosen fields need, as the fake generates
// them from the field table) into a QueueSet. The depths row is the
// default's floor: a group costs about its share of the body more.
func BenchmarkParseFields(b *testing.B) {
	const queues = 100_000
	o := fakeapi.Options{Queues: queues, Vhosts: 10}
	for _, tc := range []struct{ name, fields string }{
		{"depths", ""},
		{"depths+consumers", "messages,messages_ready,messages_unacknowledged,consumers"},
		{"issue14", "messages,messages_ready,consumers,consumer_capacity,head_message_timestamp"},
		{"metrics-group", "messages,consumer_capacity,head_message_timestamp,message_bytes,messages_persistent,memory"},
	} {
		fs, err := queue.ParseList(tc.fields)
		if err != nil {
			b.Fatal(err)
		}
		for _, style := range []fakeapi.PluginStyle{fakeapi.PluginRaw, fakeapi.PluginEscaped} {
			body := fakeapi.GeneratePluginOf(o, style, fs)
			b.Run(tc.name+"/"+string(style), func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				cpu := benchutil.CPUTime()
				for b.Loop() {
					qs := queueset.NewQueueSetOf("rabbit-1.example.com", 0, fs)
					if _, err := ParseOf(bytes.NewReader(body), qs, nil, Limits{}, fs); err != nil {
						b.Fatal(err)
					}
					if qs.Len() != queues {
						b.Fatalf("%d queues", qs.Len())
					}
				}
				reportCPU(b, cpu, queues, len(body))
			})
		}
	}
}
