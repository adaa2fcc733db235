package web

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	dto "github.com/prometheus/client_model/go"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/scrapetest"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/testbed"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queueset"
)

// The Accept clause of each scrape protocol Prometheus knows
// (config.ScrapeProtocolsHeaders in prometheus/prometheus).
const (
	acceptProto = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
	acceptOM1   = "application/openmetrics-text;version=1.0.0"
	acceptOM0   = "application/openmetrics-text;version=0.0.1"
	acceptText1 = "text/plain;version=1.0.0"
	acceptText0 = "text/plain;version=0.0.4"
)

// prometheusAccept is one Accept header Prometheus sends and the format the
// exporter must answer it with: the first protocol in the scraper's order of
// preference that the exporter writes (OpenMetrics 1.0.0 or 0.0.1, text
// 0.0.4), else text 0.0.4.
type prometheusAccept struct {
	line           string // release line and option, e.g. "2.55 utf8"
	config, header string
	want           string // media type and version, e.g. "application/openmetrics-text 1.0.0"
}

// prometheusAccepts lists every Accept header Prometheus 2.x and 3.x send,
// for every scrape_protocols list (every order of every non-empty subset),
// name validation and escaping scheme, following scrape.acceptHeader of each
// release line.
func prometheusAccepts() []prometheusAccept {
	wantOf := func(sps []string) string {
		for _, sp := range sps {
			switch sp {
			case acceptOM1:
				return "application/openmetrics-text 1.0.0"
			case acceptOM0:
				return "application/openmetrics-text 0.0.1"
			case acceptText0:
				return "text/plain 0.0.4"
			}
		}
		return "text/plain 0.0.4"
	}
	// 2.0 to 2.48: two fixed headers, the second with
	// --enable-feature=native-histograms (2.40+).
	out := []prometheusAccept{
		{"2.0-2.48", "2.0-2.48 default", "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", "application/openmetrics-text 1.0.0"},
		{"2.40-2.48", "2.40-2.48 native histograms", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", "application/openmetrics-text 1.0.0"},
	}
	// build is scrape.acceptHeader: each protocol's clause plus extra(it),
	// weights counting down from known+1, then */*.
	build := func(sps []string, known int, starFmt string, extra func(string) string) string {
		var vals []string
		weight := known + 1
		for _, sp := range sps {
			vals = append(vals, fmt.Sprintf("%s%s;q=0.%d", sp, extra(sp), weight))
			weight--
		}
		return strings.Join(append(vals, fmt.Sprintf(starFmt, weight)), ",")
	}
	none := func(string) string { return "" }
	two := []string{acceptProto, acceptText0, acceptOM0, acceptOM1}
	for _, sps := range orderedSubsets(two) {
		// 2.49 wrote the */* weight without "0." (q=1 or more).
		out = append(out, prometheusAccept{"2.49", "2.49 " + strings.Join(sps, " "), build(sps, 4, "*/*;q=%d", none), wantOf(sps)})
		out = append(out, prometheusAccept{"2.50-2.54", "2.50-2.54 " + strings.Join(sps, " "), build(sps, 4, "*/*;q=0.%d", none), wantOf(sps)})
		// 2.55: metric_name_validation_scheme utf8 adds escaping=allow-utf-8 to every clause.
		out = append(out, prometheusAccept{"2.55 utf8", "2.55 utf8 " + strings.Join(sps, " "), build(sps, 4, "*/*;q=0.%d", func(string) string { return ";escaping=allow-utf-8" }), wantOf(sps)})
	}
	three := []string{acceptProto, acceptText0, acceptText1, acceptOM0, acceptOM1}
	for _, sps := range orderedSubsets(three) {
		// 3.0 to 3.3: the text 1.0.0 clause carries escaping=allow-utf-8 itself;
		// utf8 validation (the default) adds it to every clause again.
		v30 := func(sp string) string {
			if sp == acceptText1 {
				return ";escaping=allow-utf-8"
			}
			return ""
		}
		out = append(out, prometheusAccept{"3.0-3.3 legacy", "3.0-3.3 legacy " + strings.Join(sps, " "), build(sps, 5, "*/*;q=0.%d", v30), wantOf(sps)})
		out = append(out, prometheusAccept{"3.0-3.3 utf8", "3.0-3.3 utf8 " + strings.Join(sps, " "), build(sps, 5, "*/*;q=0.%d", func(sp string) string { return v30(sp) + ";escaping=allow-utf-8" }), wantOf(sps)})
		// 3.4 on: metric_name_escaping_scheme on text 1.0.0 and OpenMetrics 1.0.0 only.
		for _, scheme := range []string{"allow-utf-8", "underscores", "dots", "values"} {
			out = append(out, prometheusAccept{"3.4+ " + scheme, "3.4+ " + scheme + " " + strings.Join(sps, " "), build(sps, 5, "*/*;q=0.%d", func(sp string) string {
				if sp == acceptText1 || sp == acceptOM1 {
					return ";escaping=" + scheme
				}
				return ""
			}), wantOf(sps)})
		}
	}
	return out
}

// orderedSubsets is every ordering of every non-empty subset of items.
func orderedSubsets(items []string) [][]string {
	var out [][]string
	var rec func(prefix []string, rest []string)
	rec = func(prefix, rest []string) {
		for i, it := range rest {
			next := append(slices.Clone(prefix), it)
			out = append(out, next)
			rec(next, append(slices.Clone(rest[:i]), rest[i+1:]...))
		}
	}
	rec(nil, items)
	return out
}

func TestPrometheusAcceptHeadersAsReleased(t *testing.T) {
	headers := map[string]bool{}
	for _, a := range prometheusAccepts() {
		headers[a.header] = true
	}
	// Defaults of recent releases, written out from their source, so the
	// generator above is checked against what Prometheus really sends.
	for _, h := range []string{
		// 2.55 scrape_native_histograms via feature flag, legacy names.
		"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,application/openmetrics-text;version=0.0.1;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
		// 3.0 default (utf8 validation).
		"application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;escaping=allow-utf-8;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;escaping=allow-utf-8;q=0.3,*/*;q=0.2",
		// 3.4+ default.
		"application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
		// 3.4+ scrape_native_histograms: true.
		"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
		// 3.4+ scrape_protocols: [PrometheusProto].
		"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,*/*;q=0.5",
	} {
		if !headers[h] {
			t.Errorf("generator lacks %s", h)
		}
	}
	if n := len(headers); n < 2000 {
		t.Errorf("only %d distinct headers", n)
	}
}

// metricsTestHandler serves /metrics with the exporter's own collectors, as
// cmd/rabbitmq_queue_exporter registers them, and /probe, against a fake
// broker listing the fixture.
func metricsTestHandler(t *testing.T) *Handler {
	t.Helper()
	_, addr := fakeBroker(t, serveBody(fixture(t, "queues-3.10.8-lean.json")))
	h, _ := newTestHandler(t, addr)
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		versioncollector.NewCollector("rabbitmq_queue_exporter"),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGauge(prometheus.GaugeOpts{Name: "rabbitmq_queue_exporter_config_last_reload_successful", Help: "1 if the last configuration load succeeded."}),
	)
	h.Exporter = reg
	return h
}

// formatOf is the media type and version of a Content-Type.
func formatOf(t *testing.T, contentType string) string {
	t.Helper()
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		t.Fatalf("Content-Type %q: %v", contentType, err)
	}
	return mt + " " + params["version"]
}

// TestEveryPrometheusAcceptHeader answers the thousands of headers of
// prometheusAccepts; TestPrometheusAcceptHeaderSample answers a few of each
// release line in the hermetic lane.
func TestEveryPrometheusAcceptHeader(t *testing.T) {
	testbed.RequireFull(t, "exhaustive (every Accept header Prometheus sends)")
	checkAcceptHeaders(t, prometheusAccepts())
}

// TestPrometheusAcceptHeaderSample answers, for each release line and
// option, the first header that line sends for each format it can get.
func TestPrometheusAcceptHeaderSample(t *testing.T) {
	checkAcceptHeaders(t, sampleAccepts(prometheusAccepts()))
}

// sampleAccepts keeps the first header of each release line for each
// answer it must get.
func sampleAccepts(all []prometheusAccept) []prometheusAccept {
	seen := map[[2]string]bool{}
	var out []prometheusAccept
	for _, a := range all {
		k := [2]string{a.line, a.want}
		if !seen[k] {
			seen[k] = true
			out = append(out, a)
		}
	}
	return out
}

// checkAcceptHeaders scrapes /probe and /metrics with each header, with and
// without gzip: each answer must be in the format Prometheus prefers, decode
// by its headers, hold the expected samples, and every offered format must
// have been answered.
func checkAcceptHeaders(t *testing.T, accepts []prometheusAccept) {
	t.Helper()
	h := metricsTestHandler(t)
	queueSample := queueKey("rabbitmq_individual_queue_messages", "/", "fx.classic")
	for _, endpoint := range []struct {
		name    string
		handler http.HandlerFunc
		want    []string
	}{
		{"probe", h.Probe, []string{"probe_success", queueSample}},
		{"metrics", h.Metrics, []string{"go_goroutines", "go_memstats_alloc_bytes_total", "process_cpu_seconds_total", queueSample}},
	} {
		// expfmt's OpenMetrics decoder is strict and slow (about 20 ms a
		// line), too slow for thousands of answers. Each format's first
		// answer is decoded in full; the others must have its shape (see
		// shapeOf), which makes them just as valid.
		validated := map[string]string{}
		for _, a := range accepts {
			for _, encoding := range []string{"gzip", "identity"} {
				res := doScrapeRaw(t, endpoint.handler, http.Header{"Accept": {a.header}, "Accept-Encoding": {encoding}})
				what := fmt.Sprintf("/%s, Prometheus %s, Accept-Encoding %s", endpoint.name, a.config, encoding)
				if res.Code != http.StatusOK {
					t.Fatalf("%s: status %d", what, res.Code)
				}
				format := formatOf(t, res.Header().Get("Content-Type"))
				if format != a.want {
					t.Fatalf("%s: answered %s, want %s\nAccept: %s", what, format, a.want, a.header)
				}
				if gz := res.Header().Get("Content-Encoding") == "gzip"; gz != (encoding == "gzip") {
					t.Fatalf("%s: Content-Encoding %q", what, res.Header().Get("Content-Encoding"))
				}
				plain, err := scrapetest.Plain(res.Header(), res.Body.Bytes())
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				shape, err := shapeOf(plain)
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if want, ok := validated[format]; ok {
					if shape != want {
						t.Fatalf("%s: the answer differs from the validated %s answer beyond its values:\n%s\nvalidated:\n%s", what, format, shape, want)
					}
					continue
				}
				mfs, err := scrapetest.Decode(res.Header(), res.Body.Bytes())
				if err != nil {
					t.Fatalf("%s: the body is not what its headers say: %v\nAccept: %s", what, err, a.header)
				}
				samples, err := scrapetest.Flatten(mfs)
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				for _, k := range endpoint.want {
					if _, ok := samples[k]; !ok {
						t.Fatalf("%s: no %s", what, k)
					}
				}
				validated[format] = shape
			}
		}
		if len(validated) != len(offeredFormats) {
			t.Errorf("/%s: Prometheus' headers made %d of the %d offered formats: %v", endpoint.name, len(validated), len(offeredFormats), validated)
		}
	}
}

// shapeOf is an answer with each sample's value replaced by "V", after
// checking that the value is a number. Two answers of one shape are valid in
// the same formats: they differ only in numbers of valid syntax. (These
// answers have no timestamps or exemplars, so a sample line's value is its
// last field, and labels values hold no line feed.)
func shapeOf(body []byte) (string, error) {
	var b strings.Builder
	for line := range strings.Lines(string(body)) {
		if !strings.HasPrefix(line, "#") {
			i := strings.LastIndexByte(line, ' ')
			if i < 0 {
				return "", fmt.Errorf("sample line without a value: %q", line)
			}
			v := strings.TrimSuffix(line[i+1:], "\n")
			if _, err := strconv.ParseFloat(v, 64); err != nil {
				return "", fmt.Errorf("sample line %q: %w", line, err)
			}
			line = line[:i+1] + "V\n"
		}
		b.WriteString(line)
	}
	return b.String(), nil
}

func doScrapeRaw(t *testing.T, h http.HandlerFunc, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header = header
	rec := httptest.NewRecorder()
	h(rec, req)
	return rec
}

// TestPromtoolAcceptsEveryFormat checks /metrics (with the Go and process
// collectors, whose go_memstats_alloc_bytes gauge and _total counter collide
// in OpenMetrics) and /probe in every format the exporter offers.
// In the full lane only: promtool runs once per format, endpoint and
// encoding; cmd/rabbitmq_queue_exporter's TestAnswersAsPrometheusAsks runs
// it on a few answers of the built exporter in the hermetic lane.
func TestPromtoolAcceptsEveryFormat(t *testing.T) {
	testbed.RequireFull(t, "exhaustive (promtool on every format)")
	h := metricsTestHandler(t)
	for _, endpoint := range []struct {
		name    string
		handler http.HandlerFunc
	}{{"probe", h.Probe}, {"metrics", h.Metrics}} {
		for _, f := range offeredFormats {
			for _, encoding := range []string{"gzip", ""} {
				t.Run(fmt.Sprintf("%s %s %s", endpoint.name, f, encoding), func(t *testing.T) {
					res := doScrapeRaw(t, endpoint.handler, http.Header{"Accept": {string(f)}, "Accept-Encoding": {encoding}})
					if formatOf(t, res.Header().Get("Content-Type")) != formatOf(t, string(f)) {
						t.Fatalf("asked for %s, got %s", f, res.Header().Get("Content-Type"))
					}
					scrapetest.Promtool(t, res.Header(), res.Body.Bytes())
				})
			}
		}
	}
}

func TestShadowedGaugeLeftOut(t *testing.T) {
	family := func(name string, typ dto.MetricType) *dto.MetricFamily {
		return &dto.MetricFamily{Name: &name, Type: &typ}
	}
	in := []*dto.MetricFamily{
		family("go_memstats_alloc_bytes", dto.MetricType_GAUGE),
		family("go_memstats_alloc_bytes_total", dto.MetricType_COUNTER),
		family("go_memstats_heap_alloc_bytes", dto.MetricType_GAUGE),
		family("jobs", dto.MetricType_UNTYPED),
		family("jobs_total", dto.MetricType_COUNTER),
		family("errors_total", dto.MetricType_GAUGE), // not a counter: shadows nothing
		family("errors", dto.MetricType_GAUGE),
	}
	var got []string
	for _, mf := range dropShadowedFamilies(in) {
		got = append(got, mf.GetName())
	}
	want := []string{"go_memstats_alloc_bytes_total", "go_memstats_heap_alloc_bytes", "jobs_total", "errors_total", "errors"}
	if !slices.Equal(got, want) {
		t.Errorf("kept %v, want %v", got, want)
	}
}

func TestVaryOnEveryAnswer(t *testing.T) {
	h := metricsTestHandler(t)
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		query   string
		header  http.Header
		status  int
	}{
		{"probe text", h.Probe, "", nil, 200},
		{"probe gzip OpenMetrics", h.Probe, "", http.Header{"Accept": {acceptOM1}, "Accept-Encoding": {"gzip"}}, 200},
		{"probe debug", h.Probe, "debug=true", nil, 200},
		{"probe bad target", h.Probe, "target=ftp://x", http.Header{"Accept-Encoding": {"gzip"}}, 400},
		{"probe forbidden target", h.Probe, "target=elsewhere.example", nil, 403},
		{"probe long query", h.Probe, "target=" + strings.Repeat("x", 5000), nil, 414},
		{"metrics", h.Metrics, "", nil, 200},
		{"metrics gzip", h.Metrics, "", http.Header{"Accept-Encoding": {"gzip"}}, 200},
		{"metrics bad timeout", h.Metrics, "", http.Header{"X-Prometheus-Scrape-Timeout-Seconds": {"soon"}}, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/probe?"+tc.query, nil)
			maps.Copy(req.Header, tc.header)
			res := httptest.NewRecorder()
			tc.handler(res, req)
			if res.Code != tc.status {
				t.Fatalf("status %d, want %d: %.300s", res.Code, tc.status, res.Body)
			}
			vary := map[string]bool{}
			for _, v := range res.Header().Values("Vary") {
				for f := range strings.SplitSeq(v, ",") {
					vary[http.CanonicalHeaderKey(strings.TrimSpace(f))] = true
				}
			}
			if !vary["Accept-Encoding"] || !vary["Accept"] {
				t.Errorf("Vary = %q, want Accept and Accept-Encoding", res.Header().Values("Vary"))
			}
		})
	}
}

// fixedGatherer always gathers the same families, so two answers can be
// compared byte for byte.
func fixedGatherer(t *testing.T) prometheus.Gatherer {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "fixed", Help: "A fixed gauge."}, []string{"k"})
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "fixed_events_total", Help: "A fixed counter."})
	reg.MustRegister(g, c)
	g.WithLabelValues("v").Set(1.5)
	c.Add(3)
	return reg
}

// bigQueueSet holds n queues with names long and varied enough that the
// answer spans several gzip segments.
func bigQueueSet(t testing.TB, n int) *queueset.QueueSet {
	t.Helper()
	qs := queueset.NewQueueSet("rabbit-1", 0)
	for i := range n {
		c := queue.Counts{int64(i % 1000), int64(i % 700), int64(i % 300)}
		if err := qs.Add([]byte(fmt.Sprintf("vhost-%d", i%10)), []byte(fmt.Sprintf("service-%d.queue \"%d\"", i%37, i)), &c, queue.AllPresent); err != nil {
			t.Fatal(err)
		}
	}
	if err := qs.Finish(); err != nil {
		t.Fatal(err)
	}
	return qs
}

func TestGzipAnswerIsExactlyThePlainOne(t *testing.T) {
	h, _ := newTestHandler(t, "localhost")
	g := fixedGatherer(t)
	for _, n := range []int{0, 10, 60000} {
		qs := bigQueueSet(t, n)
		for _, accept := range []string{"", acceptOM1} {
			answer := func(encoding string) *httptest.ResponseRecorder {
				req := httptest.NewRequest(http.MethodGet, "/", nil)
				req.Header.Set("Accept", accept)
				req.Header.Set("Accept-Encoding", encoding)
				rec := httptest.NewRecorder()
				h.writeMetrics(rec, req, slog.New(slog.DiscardHandler), g, qs)
				return rec
			}
			plain, gz := answer("identity"), answer("gzip")
			if gz.Header().Get("Content-Encoding") != "gzip" || plain.Header().Get("Content-Encoding") != "" {
				t.Fatalf("Content-Encoding %q and %q", gz.Header().Get("Content-Encoding"), plain.Header().Get("Content-Encoding"))
			}
			if gz.Header().Get("Content-Type") != plain.Header().Get("Content-Type") {
				t.Fatalf("Content-Type differs: %q, %q", gz.Header().Get("Content-Type"), plain.Header().Get("Content-Type"))
			}
			zr, err := gzip.NewReader(bytes.NewReader(gz.Body.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			zr.Multistream(false)
			got, err := io.ReadAll(zr)
			if err != nil {
				t.Fatalf("%d queues, Accept %q: gzip answer does not decompress: %v", n, accept, err)
			}
			if !bytes.Equal(got, plain.Body.Bytes()) {
				t.Fatalf("%d queues, Accept %q: gzip answer decompresses to %d bytes that differ from the %d-byte plain answer", n, accept, len(got), plain.Body.Len())
			}
			if n == 60000 && plain.Body.Len() < 3<<20 {
				t.Fatalf("answer of %d bytes spans too few segments to test their joins", plain.Body.Len())
			}
		}
	}
}

func TestAcceptsGzip(t *testing.T) {
	for header, want := range map[string]bool{
		"gzip":                    true,
		"GZIP;Q=1":                true,
		"deflate, gzip;q=0.5":     true,
		"gzip;q=0":                false,
		"gzip; q=0.000":           false,
		"identity":                false,
		"":                        false,
		"*":                       true,
		"br, *;q=0.1":             true,
		"*;q=0":                   false,
		"gzip;q=0, *":             false, // named gzip wins over *
		"*, gzip;q=0":             false,
		"x-gzip":                  false,
		"br;q=1.0, gzip;q=0.8, *": true,
	} {
		if got := acceptsGzip(header); got != want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", header, got, want)
		}
	}
}
