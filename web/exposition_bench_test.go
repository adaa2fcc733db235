package web

import (
	"bufio"
	stdgzip "compress/gzip"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	kgzip "github.com/klauspost/compress/gzip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/benchutil"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/fakeapi"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queueset"
)

// fakeQueueSet holds the queues of the fake broker's listing of n queues
// (the answer bench.sh measures: 35 MB at 100k).
func fakeQueueSet(b *testing.B, n int) *queueset.QueueSet {
	b.Helper()
	o := fakeapi.Options{Queues: n, Vhosts: 10, StreamEvery: fakeapi.DefaultStreamEvery}
	qs := queueset.NewQueueSet("127.0.0.1", 0)
	for i := range n {
		var c queue.Counts
		var has queue.Presence
		if o.HasCounts(i) {
			c[0], c[1], c[2] = fakeapi.Counts(i)
			has = queue.AllPresent
		}
		if err := qs.Add([]byte(fakeapi.VhostName(i%o.Vhosts)), []byte(fakeapi.QueueName(i)), &c, has); err != nil {
			b.Fatal(err)
		}
	}
	if err := qs.Finish(); err != nil {
		b.Fatal(err)
	}
	return qs
}

// BenchmarkGzipAnswer compares ways to write a gzip answer of n queues:
// compress/gzip and klauspost/compress gzip at BestSpeed, each formatting
// and compressing in one goroutine as the exporter did, and writeMetrics
// (pargzip: formatting overlapped with compression on every core). plain is
// writeMetrics without compression, for reference. MB/s is of the
// uncompressed answer; cpu-ns/op is the CPU the whole process spent.
func BenchmarkGzipAnswer(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		qs := fakeQueueSet(b, n)
		g := prometheus.NewRegistry()
		h := &Handler{}
		serial := func(newGzip func(io.Writer) io.WriteCloser) func(w io.Writer) {
			return func(w io.Writer) {
				zw := newGzip(w)
				bw := bufio.NewWriterSize(zw, 64<<10)
				mfs, _ := g.Gather()
				enc := expfmt.NewEncoder(bw, expfmt.NewFormat(expfmt.TypeTextPlain))
				for _, mf := range mfs {
					_ = enc.Encode(mf)
				}
				_, _ = qs.WriteTo(bw)
				bw.Flush()
				zw.Close()
			}
		}
		handler := func(encoding string) func(w io.Writer) {
			return func(w io.Writer) {
				req := httptest.NewRequest(http.MethodGet, "/probe", nil)
				req.Header.Set("Accept-Encoding", encoding)
				h.writeMetrics(&discardResponse{header: http.Header{}, w: w}, req, slog.New(slog.DiscardHandler), g, qs)
			}
		}
		var plainSize countingDiscard
		handler("identity")(&plainSize)
		for _, v := range []struct {
			name  string
			write func(io.Writer)
		}{
			{"stdlib", serial(func(w io.Writer) io.WriteCloser { z, _ := stdgzip.NewWriterLevel(w, stdgzip.BestSpeed); return z })},
			{"klauspost", serial(func(w io.Writer) io.WriteCloser { z, _ := kgzip.NewWriterLevel(w, kgzip.BestSpeed); return z })},
			{"final", handler("gzip")},
			{"plain", handler("identity")},
		} {
			b.Run(fmt.Sprintf("%dk/%s", n/1000, v.name), func(b *testing.B) {
				b.SetBytes(plainSize.n)
				b.ReportAllocs()
				var out countingDiscard
				cpu0 := benchutil.CPUTime()
				for b.Loop() {
					out = countingDiscard{}
					v.write(&out)
				}
				benchutil.ReportCPU(b, cpu0)
				b.ReportMetric(float64(out.n), "resp-bytes")
			})
		}
	}
}

type countingDiscard struct{ n int64 }

func (c *countingDiscard) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }
