package queueset

import (
	"bytes"
	"math/rand"
	"strings"
	"testing"
	"testing/quick"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
)

type testQueue struct {
	vhost, name             string
	messages, ready, unacks int64
	has                     queue.Presence
}

func (q testQueue) counts() *queue.Counts { return &queue.Counts{q.messages, q.ready, q.unacks} }

const hasAll = queue.AllPresent

func parse(t *testing.T, text []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, text)
	}
	return mfs
}

// sampleMap flattens families to "family|host|vhost|name" -> value.
func sampleMap(mfs map[string]*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			out[name+"|"+l["host"]+"|"+l["vhost"]+"|"+l["name"]] = m.GetGauge().GetValue()
		}
	}
	return out
}

// reference builds the same samples through client_golang's registry, the
// implementation we replace for speed; both must agree sample for sample.
func reference(t *testing.T, host string, qs []testQueue) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	var vecs [queue.NumFields]*prometheus.GaugeVec
	for i, f := range queue.Fields() {
		vecs[i] = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: f.Metric, Help: f.Help}, []string{"host", "vhost", "name"})
		reg.MustRegister(vecs[i])
	}
	for _, q := range qs {
		for i := range queue.NumFields {
			if q.has.Has(i) {
				vecs[i].WithLabelValues(host, q.vhost, q.name).Set(float64(q.counts()[i]))
			}
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		m[mf.GetName()] = mf
	}
	return sampleMap(m)
}

func render(t *testing.T, host string, qs []testQueue) []byte {
	t.Helper()
	s := NewQueueSet(host, 0)
	for _, q := range qs {
		if err := s.Add([]byte(q.vhost), []byte(q.name), q.counts(), q.has); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Finish(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n, err := s.WriteTo(&buf)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("WriteTo = %d, %v; buffer has %d bytes", n, err, buf.Len())
	}
	return buf.Bytes()
}

func TestQueueSetMatchesRegistry(t *testing.T) {
	tests := []struct {
		name    string
		host    string
		queues  []testQueue
		missing int
	}{
		{name: "empty", host: "h"},
		{name: "plain", host: "rabbit-1", queues: []testQueue{
			{"/", "orders", 10, 7, 3, hasAll},
			{"/", "payments", 0, 0, 0, hasAll},
			{"prod", "orders", 123456789012, 123456789012, 0, hasAll},
		}},
		{name: "absent counts get no sample", host: "h", missing: 2, queues: []testQueue{
			{"/", "stream", 0, 0, 0, 0},
			{"/", "partial", 5, 0, 0, queue.Bit(0)},
			{"/", "full", 1, 1, 0, hasAll},
		}},
		{name: "escaping", host: `h"o\st`, queues: []testQueue{
			{`v"h\o/st`, "line\nbreak", 1, 1, 0, hasAll},
			{"ünïcödé vhost", "名前 with space", 2, 1, 1, hasAll},
			{"ctl\t\r\x01", `\\"\n`, 3, 3, 0, hasAll},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := render(t, tc.host, tc.queues)
			got := sampleMap(parse(t, out))
			want := reference(t, tc.host, tc.queues)
			if len(got) != len(want) {
				t.Fatalf("got %d samples, want %d\n%s", len(got), len(want), out)
			}
			for k, v := range want {
				if g, ok := got[k]; !ok || g != v {
					t.Errorf("sample %q = %v (present %v), want %v", k, g, ok, v)
				}
			}
			s := NewQueueSet(tc.host, 0)
			for _, q := range tc.queues {
				if err := s.Add([]byte(q.vhost), []byte(q.name), q.counts(), q.has); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Finish(); err != nil {
				t.Fatal(err)
			}
			if s.MissingCounts() != tc.missing || s.Len() != len(tc.queues) || s.Duplicates() != 0 {
				t.Errorf("MissingCounts=%d Len=%d Duplicates=%d, want %d %d 0", s.MissingCounts(), s.Len(), s.Duplicates(), tc.missing, len(tc.queues))
			}
		})
	}
}

func TestFamiliesContiguousWithHeadersOnce(t *testing.T) {
	out := string(render(t, "h", []testQueue{{"a", "q1", 1, 1, 0, hasAll}, {"b", "q2", 2, 2, 0, hasAll}}))
	var order []string
	seen := map[string]bool{}
	for line := range strings.SplitSeq(strings.TrimSuffix(out, "\n"), "\n") {
		var name string
		switch {
		case strings.HasPrefix(line, "# HELP "), strings.HasPrefix(line, "# TYPE "):
			name = strings.Fields(line)[2]
		default:
			name = line[:strings.IndexByte(line, '{')]
		}
		if len(order) == 0 || order[len(order)-1] != name {
			if seen[name] {
				t.Fatalf("family %s is not contiguous:\n%s", name, out)
			}
			seen[name] = true
			order = append(order, name)
		}
	}
	if len(order) != 3 || strings.Count(out, "# TYPE ") != 3 || strings.Count(out, "# HELP ") != 3 {
		t.Fatalf("want 3 families with one HELP and TYPE each:\n%s", out)
	}
}

// TestEscapingRoundTrips checks with random label values that what we write
// parses back (with expfmt's parser) to exactly the original strings.
func TestEscapingRoundTrips(t *testing.T) {
	alphabet := []rune("ab\\\"\n\t\r /{}=,#ü名\u2028\x00\x7f")
	gen := func(r *rand.Rand) string {
		n := r.Intn(12)
		rs := make([]rune, n)
		for i := range rs {
			rs[i] = alphabet[r.Intn(len(alphabet))]
		}
		return string(rs)
	}
	check := func(seed int64) bool {
		r := rand.New(rand.NewSource(seed))
		host, vhost, name := gen(r), gen(r), gen(r)
		out := render(t, host, []testQueue{{vhost, name, 1, 2, 3, hasAll}})
		got := sampleMap(parse(t, out))
		return got["rabbitmq_individual_queue_messages_ready|"+host+"|"+vhost+"|"+name] == 2 && len(got) == 3
	}
	if err := quick.Check(check, &quick.Config{MaxCount: 2000}); err != nil {
		t.Fatal(err)
	}
}

func FuzzEscaping(f *testing.F) {
	for _, s := range []string{"", "plain", `a"b`, `a\b`, "a\nb", "ü", `\n`} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, vhost, name string) {
		out := render(t, "h", []testQueue{{vhost, name, 7, 7, 0, hasAll}})
		got := sampleMap(parse(t, out))
		// Invalid UTF-8 comes out as U+FFFD per bad byte, as encoding/json decodes it.
		vhost, name = validUTF8(vhost), validUTF8(name)
		if got["rabbitmq_individual_queue_messages|h|"+vhost+"|"+name] != 7 || len(got) != 3 {
			t.Fatalf("round trip failed for %q %q:\n%s", vhost, name, out)
		}
	})
}

// validUTF8 replaces each byte that is not part of valid UTF-8 with U+FFFD.
func validUTF8(s string) string {
	var b strings.Builder
	for _, r := range s { // range yields RuneError for each invalid byte
		b.WriteRune(r)
	}
	return b.String()
}

// TestHoldsAgreesWithEscapedLabels checks Set's in-place comparison against
// the plain one (escape, then compare bytes) for names that are prefixes of
// each other, need escaping, or hold the separator between the two labels.
func TestHoldsAgreesWithEscapedLabels(t *testing.T) {
	names := []string{"", "a", "ab", "a\\", `a"`, `a\"`, `a\\`, "a\n", "ä", "\xff", "\uFFFD", `a",vhost="b`, "a b", "queue.1", "queue.10"}
	s := NewQueueSet("h", 0)
	type pair struct{ vhost, name string }
	var stored []pair
	for _, v := range names {
		for _, n := range names {
			if err := s.Add([]byte(v), []byte(n), &queue.Counts{}, 0); err != nil {
				t.Fatal(err)
			}
			stored = append(stored, pair{v, n})
		}
	}
	escaped := func(v, n string) string {
		b := make([]byte, labelsRoom([]byte(v), []byte(n)))
		return string(b[:putLabels(b, []byte(v), []byte(n))])
	}
	ref := uint32(0)
	for _, p := range stored {
		for _, q := range stored {
			want := escaped(p.vhost, p.name) == escaped(q.vhost, q.name)
			if got := s.holds(ref, []byte(q.vhost), []byte(q.name)); got != want {
				t.Errorf("holds(%q/%q, %q/%q) = %v, want %v", p.vhost, p.name, q.vhost, q.name, got, want)
			}
		}
		ref = s.next(ref)
	}
}
