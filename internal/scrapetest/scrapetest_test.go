package scrapetest

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"strings"
	"testing"
)

const text = `# HELP up Up.
# TYPE up gauge
up{job="a b",instance="x\"y"} 1
# HELP reqs_total Requests.
# TYPE reqs_total counter
reqs_total 7
# HELP lat Latency.
# TYPE lat summary
lat{quantile="0.5"} 0.25
lat_sum 3
lat_count 4
`

const openMetrics = `# HELP up Up.
# TYPE up gauge
up{job="a b",instance="x\"y"} 1
# HELP reqs Requests.
# TYPE reqs counter
reqs_total 7
# HELP lat Latency.
# TYPE lat summary
lat{quantile="0.5"} 0.25
lat_sum 3
lat_count 4
# EOF
`

func header(ct, enc string) http.Header {
	h := http.Header{"Content-Type": {ct}}
	if enc != "" {
		h.Set("Content-Encoding", enc)
	}
	return h
}

func gz(s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	_, _ = w.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

func TestSameSamplesInEveryFormat(t *testing.T) {
	want := Samples{
		Key("up", "job", "a b", "instance", `x"y`): 1,
		"reqs_total":                  7,
		Key("lat", "quantile", "0.5"): 0.25,
		"lat_sum":                     3,
		"lat_count":                   4,
	}
	for _, tc := range []struct {
		name string
		h    http.Header
		body []byte
	}{
		{"text", header(TextContentType, ""), []byte(text)},
		{"text gzip", header("text/plain; version=0.0.4; charset=utf-8; escaping=underscores", "gzip"), gz(text)},
		{"openmetrics", header("application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=allow-utf-8", ""), []byte(openMetrics)},
		{"openmetrics 0.0.1 gzip", header("application/openmetrics-text; version=0.0.1; charset=utf-8", "gzip"), gz(openMetrics)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Parse(t, tc.h, tc.body)
			if len(got) != len(want) {
				t.Errorf("got %v, want %v", got, want)
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
				}
			}
			Promtool(t, tc.h, tc.body)
		})
	}
	if k := Key("m", "b", "2", "a", "1"); k != `m{a="1",b="2"}` {
		t.Errorf("Key = %s", k)
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, tc := range []struct {
		name, ct, enc, body, err string
	}{
		{"openmetrics without EOF", "application/openmetrics-text; version=1.0.0; charset=utf-8", "", strings.TrimSuffix(openMetrics, "# EOF\n"), "EOF"},
		{"text under an OpenMetrics type", "application/openmetrics-text; version=1.0.0; charset=utf-8", "", text, "not valid"},
		{"protobuf type, text body", "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited", "", text, "not valid"},
		{"unknown type", "application/json", "", text, "no format"},
		{"gzip header, plain body", TextContentType, "gzip", text, "gzip"},
		{"series twice", TextContentType, "", "a 1\nb 1\na 2\n", "duplicate series a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mfs, err := Decode(header(tc.ct, tc.enc), []byte(tc.body))
			if err == nil {
				_, err = Flatten(mfs)
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("Decode error = %v, want one containing %q", err, tc.err)
			}
		})
	}
}
