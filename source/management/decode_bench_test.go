package management

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/benchutil"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
)

// leanBody is what the exporter's columns= request returns for n queues, in the broker's key
// order, with counts of varied width.
func leanBody(n int) []byte {
	return canonicalListing(brokerKeys, n, func(i int) (string, string, queue.Counts, queue.Presence) {
		var c queue.Counts
		c[0], c[1], c[2] = counts(i)
		return queueName(i), fmt.Sprint("vhost-", i%10), c, queue.AllPresent
	})
}

func counts(i int) (m, r, u int64) {
	width := []int64{1, 10, 100, 1000, 100000, 10000000}[i%6]
	m = int64(i*7919) % width
	u = m % 17
	return m, m - u, u
}

func queueName(i int) string { return fmt.Sprintf("orders.eu-west.consumer-%06d", i) }

// fullBody repeats the first (classic) queue of the recorded default response, the broker's
// full-stats shape, with the identity and counts varied.
func fullBody(tb testing.TB, n int) []byte {
	var list []json.RawMessage
	if err := json.Unmarshal(testdataFiles(tb)["queues-3.10.8-default.json"], &list); err != nil {
		tb.Fatal(err)
	}
	tmpl := string(list[0])
	for _, r := range [][2]string{
		{`"name":"fx.classic"`, `"name":"%s"`},
		{`"vhost":"/"`, `"vhost":"vhost-%d"`},
		{`"messages":3,`, `"messages":%d,`},
		{`"messages_ready":3,`, `"messages_ready":%d,`},
		{`"messages_unacknowledged":0,`, `"messages_unacknowledged":%d,`},
	} {
		if strings.Count(tmpl, r[0]) != 1 {
			tb.Fatalf("template: %s not found exactly once", r[0])
		}
		tmpl = strings.Replace(tmpl, r[0], r[1], 1)
	}
	var b bytes.Buffer
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		m, r, u := counts(i)
		// The template's placeholders appear in key order: messages, ready, unacked, name, vhost.
		fmt.Fprintf(&b, tmpl, m, r, u, queueName(i), i%10)
	}
	b.WriteByte(']')
	return b.Bytes()
}

func BenchmarkDecodeQueues(b *testing.B) {
	for _, shape := range []string{"lean", "full"} {
		for _, n := range []int{1000, 10000, 100000} {
			b.Run(fmt.Sprintf("%s/%dk", shape, n/1000), func(b *testing.B) {
				// Generated here so that only selected sizes pay for it.
				var data []byte
				if shape == "lean" {
					data = leanBody(n)
				} else {
					data = fullBody(b, n)
				}
				b.Run("scanner", func(b *testing.B) {
					benchDecoder(b, data, n, func(r io.Reader) (int, error) {
						seen := 0
						err := DecodeQueues(r, DecodeLimits{}, func(q *Queue) error {
							if q.Has == queue.AllPresent && len(q.Name) > 0 {
								seen++
							}
							return nil
						})
						return seen, err
					})
				})
				b.Run("encoding_json", func(b *testing.B) {
					benchDecoder(b, data, n, stdlibDecode)
				})
			})
		}
	}
}

func benchDecoder(b *testing.B, data []byte, n int, decode func(io.Reader) (int, error)) {
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	cpu0 := benchutil.CPUTime()
	for b.Loop() {
		seen, err := decode(bytes.NewReader(data))
		if err != nil || seen != n {
			b.Fatalf("decoded %d of %d queues: %v", seen, n, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/queue")
	// Wall time on a shared machine mostly measures the neighbours; CPU time is the decoder's.
	if cpu := benchutil.CPUTime() - cpu0; cpu0 > 0 && b.N > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/float64(n), "cpu-ns/queue")
	}
}

// stdlibDecode is the idiomatic streaming use of encoding/json for comparison: Token for the
// brackets, Decode per element into a small struct.
func stdlibDecode(r io.Reader) (int, error) {
	dec := json.NewDecoder(r)
	if _, err := dec.Token(); err != nil {
		return 0, err
	}
	seen := 0
	for dec.More() {
		var q struct {
			Name                   string `json:"name"`
			Vhost                  string `json:"vhost"`
			Messages               *int64 `json:"messages"`
			MessagesReady          *int64 `json:"messages_ready"`
			MessagesUnacknowledged *int64 `json:"messages_unacknowledged"`
		}
		if err := dec.Decode(&q); err != nil {
			return seen, err
		}
		if q.Messages != nil && q.MessagesReady != nil && q.MessagesUnacknowledged != nil && q.Name != "" {
			seen++
		}
	}
	_, err := dec.Token()
	return seen, err
}
