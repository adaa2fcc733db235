// Package collector turns one queue listing into Prometheus exposition text.
//
// A listing of 100k queues is 300k samples. Building prometheus.Metric values
// and sorting them in a registry costs seconds and hundreds of MB at that size,
// so QueueSet keeps each queue once, with its labels already escaped, and writes
// the three families straight out in the negotiated format.
package collector

import (
	"bufio"
	"io"
	"strconv"
)

// Count presence bits, matching management.Has*.
const (
	HasMessages uint8 = 1 << iota
	HasMessagesReady
	HasMessagesUnacknowledged
	hasAll = HasMessages | HasMessagesReady | HasMessagesUnacknowledged
)

// Family describes one per-queue metric family.
type Family struct {
	Name string
	Help string
	bit  uint8
}

// Families are the per-queue gauges, in the order they are written.
var Families = [3]Family{
	{"rabbitmq_individual_queue_messages", "Messages in the queue (ready plus unacknowledged), as reported by the management API.", HasMessages},
	{"rabbitmq_individual_queue_messages_ready", "Messages in the queue ready to be delivered to consumers.", HasMessagesReady},
	{"rabbitmq_individual_queue_messages_unacknowledged", "Messages in the queue delivered to consumers but not yet acknowledged.", HasMessagesUnacknowledged},
}

type queueEntry struct {
	labelsEnd int // end offset of this queue's escaped labels in QueueSet.labels
	values    [3]int64
	has       uint8
}

// QueueSet is the compact result of one listing. It is immutable once the
// listing completed, so concurrent scrapes sharing one broker request may all
// write it out.
type QueueSet struct {
	hostLabel []byte // `{host="…",`
	labels    []byte // `name="…",vhost="…"` of every queue, back to back
	entries   []queueEntry
	missing   int
}

// NewQueueSet starts an empty set for the broker whose hostname is host.
func NewQueueSet(host string) *QueueSet {
	s := &QueueSet{}
	s.hostLabel = append(s.hostLabel, `{host="`...)
	s.hostLabel = appendEscaped(s.hostLabel, host)
	s.hostLabel = append(s.hostLabel, `",`...)
	return s
}

// Add records one queue. vhost and name are copied; has tells which of
// messages, ready and unacked are present (absent counts get no sample).
func (s *QueueSet) Add(vhost, name []byte, messages, ready, unacked int64, has uint8) {
	s.labels = append(s.labels, `name="`...)
	s.labels = appendEscaped(s.labels, name)
	s.labels = append(s.labels, `",vhost="`...)
	s.labels = appendEscaped(s.labels, vhost)
	s.labels = append(s.labels, '"')
	has &= hasAll
	if has != hasAll {
		s.missing++
	}
	s.entries = append(s.entries, queueEntry{labelsEnd: len(s.labels), values: [3]int64{messages, ready, unacked}, has: has})
}

// Len is the number of queues recorded.
func (s *QueueSet) Len() int { return len(s.entries) }

// MissingCounts is the number of queues lacking at least one of the three counts.
func (s *QueueSet) MissingCounts() int { return s.missing }

// Samples is the number of samples WriteTo emits.
func (s *QueueSet) Samples() int {
	n := 0
	for _, e := range s.entries {
		for _, f := range Families {
			if e.has&f.bit != 0 {
				n++
			}
		}
	}
	return n
}

// WriteTo writes the three families, each contiguous with HELP and TYPE once.
// Integer gauge lines are identical in the text format and OpenMetrics, so one
// writer serves both; the OpenMetrics `# EOF` line is the caller's to append
// after all families of the response.
func (s *QueueSet) WriteTo(w io.Writer) (int64, error) {
	bw, ok := w.(*bufio.Writer)
	if !ok {
		bw = bufio.NewWriterSize(w, 64<<10)
	}
	var written int64
	line := make([]byte, 0, 256)
	for i, f := range Families {
		if !s.hasAny(f.bit) {
			continue
		}
		line = appendHeader(line[:0], f)
		n, err := bw.Write(line)
		written += int64(n)
		if err != nil {
			return written, err
		}
		start := 0
		for _, e := range s.entries {
			if e.has&f.bit != 0 {
				line = append(line[:0], f.Name...)
				line = append(line, s.hostLabel...)
				line = append(line, s.labels[start:e.labelsEnd]...)
				line = append(line, '}', ' ')
				line = strconv.AppendInt(line, e.values[i], 10)
				line = append(line, '\n')
				n, err := bw.Write(line)
				written += int64(n)
				if err != nil {
					return written, err
				}
			}
			start = e.labelsEnd
		}
	}
	if !ok {
		return written, bw.Flush()
	}
	return written, nil
}

func (s *QueueSet) hasAny(bit uint8) bool {
	for _, e := range s.entries {
		if e.has&bit != 0 {
			return true
		}
	}
	return false
}

// appendHeader writes HELP then TYPE, which both the text format and
// OpenMetrics accept; the HELP texts are constant and need no escaping.
func appendHeader(b []byte, f Family) []byte {
	b = append(b, "# HELP "...)
	b = append(b, f.Name...)
	b = append(b, ' ')
	b = append(b, f.Help...)
	b = append(b, "\n# TYPE "...)
	b = append(b, f.Name...)
	b = append(b, " gauge\n"...)
	return b
}

// appendEscaped escapes a label value as both exposition formats require:
// backslash, double quote and line feed. Everything else is valid UTF-8 as is
// (the decoder already replaced invalid bytes with U+FFFD).
func appendEscaped[T []byte | string](b []byte, v T) []byte {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			b = append(b, '\\', '\\')
		case '"':
			b = append(b, '\\', '"')
		case '\n':
			b = append(b, '\\', 'n')
		default:
			b = append(b, c)
		}
	}
	return b
}
