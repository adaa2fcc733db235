package plugin

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queueset"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source/management"
)

// sample is one count of one queue, labels as read (not normalised).
type sample struct {
	field       int
	vhost, name string
}

// recorder is a Sink that keeps every sample, for exact comparisons.
type recorder struct {
	got map[sample]int64
}

func newRecorder() *recorder { return &recorder{got: map[sample]int64{}} }

func (r *recorder) Set(vhost, name []byte, field int, v int64) (bool, error) {
	k := sample{field, string(vhost), string(name)}
	if _, dup := r.got[k]; dup {
		return true, nil
	}
	r.got[k] = v
	return false, nil
}

func (r *recorder) String() string { return formatSamples(r.got) }

func formatSamples(m map[sample]int64) string {
	var lines []string
	for k, v := range m {
		lines = append(lines, fmt.Sprintf("%d %q %q = %d", k.field, k.vhost, k.name, v))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func equalSamples(a, b map[sample]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// exposed writes qs out and reads it back with expfmt's parser: the samples
// the exporter would serve, keyed by field number (the family) and labels.
func exposed(t *testing.T, qs *queueset.QueueSet) map[sample]int64 {
	t.Helper()
	if err := qs.Finish(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := qs.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(&buf)
	if err != nil {
		t.Fatalf("QueueSet output does not parse: %v", err)
	}
	// The exporter writes gauges: any other type reads as 0 and fails the
	// comparison.
	return fieldSamples(mfs, func(f queue.Field) string { return f.Metric }, "name",
		func(m *dto.Metric) float64 { return m.GetGauge().GetValue() })
}

// fieldSamples reads the queue fields' families out of parsed exposition:
// each field's family is named by family(f), a queue's name is in the
// label queueLabel, its value is value(m).
func fieldSamples(mfs map[string]*dto.MetricFamily, family func(queue.Field) string, queueLabel string, value func(*dto.Metric) float64) map[sample]int64 {
	out := map[sample]int64{}
	for i, f := range queue.Fields() {
		for _, m := range mfs[family(f)].GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			out[sample{i, l["vhost"], l[queueLabel]}] = int64(value(m))
		}
	}
	return out
}

// managementSamples decodes a management listing as the exporter does.
func managementSamples(t *testing.T, body []byte) map[sample]int64 {
	t.Helper()
	qs := queueset.NewQueueSet("h", 0)
	err := management.DecodeQueues(bytes.NewReader(body), management.DecodeLimits{}, func(q *management.Queue) error {
		return qs.Add(q.Vhost, q.Name, &q.Counts, q.Has)
	})
	if err != nil {
		t.Fatalf("management listing: %v", err)
	}
	return exposed(t, qs)
}

// pluginSamples parses a plugin answer into a QueueSet, as the exporter will.
func pluginSamples(t *testing.T, body []byte) (map[sample]int64, Result, error) {
	t.Helper()
	qs := queueset.NewQueueSet("h", 0)
	res, err := Parse(bytes.NewReader(body), qs, nil, Limits{})
	if err != nil {
		return nil, res, err
	}
	return exposed(t, qs), res, nil
}

// diffSamples describes how got differs from want, one line per sample.
func diffSamples(got, want map[sample]int64) string {
	var out []string
	for k, v := range want {
		if w, ok := got[k]; !ok {
			out = append(out, fmt.Sprintf("missing %d %q %q = %d", k.field, k.vhost, k.name, v))
		} else if w != v {
			out = append(out, fmt.Sprintf("%d %q %q = %d, want %d", k.field, k.vhost, k.name, w, v))
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			out = append(out, fmt.Sprintf("extra %d %q %q = %d", k.field, k.vhost, k.name, v))
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}
