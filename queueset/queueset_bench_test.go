package queueset

import (
	"bufio"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/benchutil"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/fakeapi"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
)

var benchSizes = []int{1000, 10000, 100000}

// benchQueues holds the queues the fake broker lists (realistic names, 2%
// streams) in one pointer-free arena, like the decoder's buffer: a slice per
// name would give the GC 200k pointers to chase and bill it to QueueSet.
type benchQueues struct {
	arena  []byte
	queues []benchQueue
}

type benchQueue struct {
	vhostEnd, nameEnd int // name is arena[vhostEnd:nameEnd], vhost precedes it
	counts            queue.Counts
	has               queue.Presence
}

func newBenchQueues(n int) *benchQueues {
	o := fakeapi.Options{Queues: n, Vhosts: 10, StreamEvery: fakeapi.DefaultStreamEvery}
	bq := &benchQueues{queues: make([]benchQueue, n)}
	for i := range bq.queues {
		q := &bq.queues[i]
		bq.arena = append(bq.arena, fakeapi.VhostName(i%o.Vhosts)...)
		q.vhostEnd = len(bq.arena)
		bq.arena = append(bq.arena, fakeapi.QueueName(i)...)
		q.nameEnd = len(bq.arena)
		if o.HasCounts(i) {
			q.counts[0], q.counts[1], q.counts[2] = fakeapi.Counts(i)
			q.has = hasAll
		}
	}
	return bq
}

// addTo adds every queue to s, as the management source's decode callback does.
func (bq *benchQueues) addTo(s *QueueSet) {
	start := 0
	for i := range bq.queues {
		q := &bq.queues[i]
		if err := s.Add(bq.arena[start:q.vhostEnd], bq.arena[q.vhostEnd:q.nameEnd], &q.counts, q.has); err != nil {
			panic(err)
		}
		start = q.nameEnd
	}
	if err := s.Finish(); err != nil {
		panic(err)
	}
}

// countingDiscard stands in for the response: it costs nothing but counts.
type countingDiscard struct{ n int64 }

func (c *countingDiscard) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// BenchmarkQueueSet is the exporter's path after decoding: Add every queue,
// then write the three families through a 64 KiB buffer as the web handler does.
func BenchmarkQueueSet(b *testing.B) {
	for _, n := range benchSizes {
		bq := newBenchQueues(n)
		b.Run(fmt.Sprintf("%dk", n/1000), func(b *testing.B) {
			b.ReportAllocs()
			var out countingDiscard
			bw := bufio.NewWriterSize(&out, 64<<10)
			cpu0 := benchutil.CPUTime()
			for b.Loop() {
				out.n = 0
				s := NewQueueSet("rabbit-1.example.com", 0)
				bq.addTo(s)
				if _, err := s.WriteTo(bw); err != nil {
					b.Fatal(err)
				}
				bw.Flush()
			}
			benchutil.ReportCPU(b, cpu0)
			b.SetBytes(out.n)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/queue")
		})
	}
}

// BenchmarkQueueSetWriteTo isolates the exposition writer (one set, many writes),
// which is what every extra concurrent scrape of a shared listing costs.
func BenchmarkQueueSetWriteTo(b *testing.B) {
	for _, n := range benchSizes {
		s := NewQueueSet("rabbit-1.example.com", 0)
		newBenchQueues(n).addTo(s)
		b.Run(fmt.Sprintf("%dk", n/1000), func(b *testing.B) {
			b.ReportAllocs()
			var out countingDiscard
			bw := bufio.NewWriterSize(&out, 64<<10)
			cpu0 := benchutil.CPUTime()
			for b.Loop() {
				out.n = 0
				if _, err := s.WriteTo(bw); err != nil {
					b.Fatal(err)
				}
				bw.Flush()
			}
			benchutil.ReportCPU(b, cpu0)
			b.SetBytes(out.n)
		})
	}
}

// constCollector emits the queue samples as client_golang const metrics, the
// idiomatic way an exporter without QueueSet would do it.
type constCollector struct {
	host   string
	descs  [queue.NumFields]*prometheus.Desc
	queues []benchQueue
	vhost  []string // label strings made once, as a collector holding strings would
	name   []string
}

func (c *constCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *constCollector) Collect(ch chan<- prometheus.Metric) {
	for i, q := range c.queues {
		for f := range queue.NumFields {
			if q.has.Has(f) {
				ch <- prometheus.MustNewConstMetric(c.descs[f], prometheus.GaugeValue, float64(q.counts[f]), c.host, c.vhost[i], c.name[i])
			}
		}
	}
}

// BenchmarkClientGolang is the baseline QueueSet replaces: the same samples via
// MustNewConstMetric, a registry Gather (which sorts) and expfmt's text encoder.
func BenchmarkClientGolang(b *testing.B) {
	for _, n := range benchSizes {
		bq := newBenchQueues(n)
		c := &constCollector{host: "rabbit-1.example.com", queues: bq.queues, vhost: make([]string, n), name: make([]string, n)}
		start := 0
		for i, q := range bq.queues {
			c.vhost[i], c.name[i] = string(bq.arena[start:q.vhostEnd]), string(bq.arena[q.vhostEnd:q.nameEnd])
			start = q.nameEnd
		}
		for f, fam := range queue.Fields() {
			c.descs[f] = prometheus.NewDesc(fam.Metric, fam.Help, []string{"host", "vhost", "name"}, nil)
		}
		b.Run(fmt.Sprintf("%dk", n/1000), func(b *testing.B) {
			b.ReportAllocs()
			var out countingDiscard
			bw := bufio.NewWriterSize(&out, 64<<10)
			cpu0 := benchutil.CPUTime()
			for b.Loop() {
				out.n = 0
				reg := prometheus.NewPedanticRegistry()
				reg.MustRegister(c)
				mfs, err := reg.Gather()
				if err != nil {
					b.Fatal(err)
				}
				enc := expfmt.NewEncoder(bw, expfmt.NewFormat(expfmt.TypeTextPlain))
				for _, mf := range mfs {
					if err := enc.Encode(mf); err != nil {
						b.Fatal(err)
					}
				}
				bw.Flush()
			}
			benchutil.ReportCPU(b, cpu0)
			b.SetBytes(out.n)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/queue")
		})
	}
}
