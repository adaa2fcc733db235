// Package scrapetest reads exposition answers in tests the way a scraper
// does: by their Content-Type and Content-Encoding, with expfmt's decoders
// (the OpenMetrics one is strict: a body it accepts is valid OpenMetrics).
// It also holds the checks and helpers several test packages share.
package scrapetest

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TextContentType is the Content-Type of the text format 0.0.4, for bodies
// that were read without their headers.
const TextContentType = "text/plain; version=0.0.4; charset=utf-8"

// Samples maps Key(family, labels...) to the sample's value.
type Samples map[string]float64

// Key names one series unambiguously: the metric name, then its labels
// sorted by name with values quoted by strconv.Quote, e.g.
// rabbitmq_up{host="a"}; a series without labels is just its name.
// labels are name, value pairs.
func Key(name string, labels ...string) string {
	if len(labels)%2 != 0 {
		panic("scrapetest.Key: labels must be name, value pairs")
	}
	pairs := make([][2]string, 0, len(labels)/2)
	for i := 0; i < len(labels); i += 2 {
		pairs = append(pairs, [2]string{labels[i], labels[i+1]})
	}
	return key(name, pairs)
}

func key(name string, pairs [][2]string) string {
	if len(pairs) == 0 {
		return name
	}
	sort.Slice(pairs, func(i, j int) bool { return pairs[i][0] < pairs[j][0] })
	var b strings.Builder
	b.WriteString(name)
	for i, p := range pairs {
		if i == 0 {
			b.WriteByte('{')
		} else {
			b.WriteByte(',')
		}
		b.WriteString(p[0] + "=" + strconv.Quote(p[1]))
	}
	b.WriteByte('}')
	return b.String()
}

// Decode reads an answer by its headers: gunzips it when Content-Encoding is
// gzip, then decodes it in the format its Content-Type names. An unknown
// Content-Type, a body that is not valid in its format, or a duplicate
// family is an error.
func Decode(header http.Header, body []byte) ([]*dto.MetricFamily, error) {
	body, err := Plain(header, body)
	if err != nil {
		return nil, err
	}
	format := expfmt.ResponseFormat(header)
	if format.FormatType() == expfmt.TypeUnknown {
		return nil, fmt.Errorf("Content-Type %q is no format a scraper reads", header.Get("Content-Type"))
	}
	// ResponseFormat drops the escaping parameter; keep the one sent, which
	// decides whether names are validated as UTF-8 or as legacy names.
	if _, params, err := mime.ParseMediaType(header.Get("Content-Type")); err == nil && params[model.EscapingKey] != "" {
		scheme, err := model.ToEscapingScheme(params[model.EscapingKey])
		if err != nil {
			return nil, fmt.Errorf("Content-Type %q: %w", header.Get("Content-Type"), err)
		}
		format = format.WithEscapingScheme(scheme)
	}
	dec := expfmt.NewDecoder(bytes.NewReader(body), format)
	var mfs []*dto.MetricFamily
	seen := map[string]bool{}
	for {
		mf := &dto.MetricFamily{}
		err := dec.Decode(mf)
		if errors.Is(err, io.EOF) {
			return mfs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("body is not valid %s: %w", format, err)
		}
		if seen[mf.GetName()] {
			return nil, fmt.Errorf("family %s appears twice", mf.GetName())
		}
		seen[mf.GetName()] = true
		mfs = append(mfs, mf)
	}
}

// Plain returns the body as it was before its Content-Encoding (gzip or none).
func Plain(header http.Header, body []byte) ([]byte, error) {
	switch enc := header.Get("Content-Encoding"); enc {
	case "":
		return body, nil
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("Content-Encoding gzip, but: %w", err)
		}
		zr.Multistream(false)
		if body, err = io.ReadAll(zr); err != nil {
			return nil, fmt.Errorf("Content-Encoding gzip, but: %w", err)
		}
		if rest, _ := io.ReadAll(zr); len(rest) > 0 {
			return nil, fmt.Errorf("Content-Encoding gzip, but %d bytes follow the gzip member", len(rest))
		}
		return body, nil
	default:
		return nil, fmt.Errorf("unexpected Content-Encoding %q", enc)
	}
}

// Parse decodes an answer (see Decode) into its samples and fails the test
// when it does not decode or holds a series twice.
func Parse(t testing.TB, header http.Header, body []byte) Samples {
	t.Helper()
	mfs, err := Decode(header, body)
	if err != nil {
		t.Fatalf("%v\n%.2000s", err, body)
	}
	s, err := Flatten(mfs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// ParseText parses a body in the text format 0.0.4 (see Parse).
func ParseText(t testing.TB, body string) Samples {
	t.Helper()
	return Parse(t, http.Header{"Content-Type": {TextContentType}}, []byte(body))
}

// Flatten turns families into samples the way Prometheus stores them: a
// counter, gauge or untyped value under its name (counters with _total as
// exposed in every format), summaries and histograms as their _sum, _count
// and quantile or bucket series.
func Flatten(mfs []*dto.MetricFamily) (Samples, error) {
	out := Samples{}
	for _, mf := range mfs {
		name := mf.GetName()
		for _, m := range mf.GetMetric() {
			pairs := make([][2]string, 0, len(m.GetLabel())+1)
			for _, l := range m.GetLabel() {
				pairs = append(pairs, [2]string{l.GetName(), l.GetValue()})
			}
			put := func(name string, v float64, extra ...string) error {
				p := pairs
				if len(extra) == 2 {
					p = append(slices.Clip(pairs), [2]string{extra[0], extra[1]})
				}
				k := key(name, p)
				if _, dup := out[k]; dup {
					return fmt.Errorf("duplicate series %s", k)
				}
				out[k] = v
				return nil
			}
			var err error
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				err = put(name, m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				err = put(name, m.GetGauge().GetValue())
			case dto.MetricType_SUMMARY:
				s := m.GetSummary()
				for _, q := range s.GetQuantile() {
					if err == nil {
						err = put(name, q.GetValue(), "quantile", formatFloat(q.GetQuantile()))
					}
				}
				if err == nil {
					err = put(name+"_sum", s.GetSampleSum())
				}
				if err == nil {
					err = put(name+"_count", float64(s.GetSampleCount()))
				}
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				h := m.GetHistogram()
				for _, b := range h.GetBucket() {
					if err == nil {
						err = put(name+"_bucket", float64(b.GetCumulativeCount()), "le", formatFloat(b.GetUpperBound()))
					}
				}
				if err == nil {
					err = put(name+"_sum", h.GetSampleSum())
				}
				if err == nil {
					err = put(name+"_count", float64(h.GetSampleCount()))
				}
			default:
				err = put(name, m.GetUntyped().GetValue())
			}
			if err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func formatFloat(f float64) string {
	if math.IsInf(f, +1) {
		return "+Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// KeyOf is Key with the labels given as a map.
func KeyOf(name string, labels map[string]string) string {
	pairs := make([][2]string, 0, len(labels))
	for k, v := range labels {
		pairs = append(pairs, [2]string{k, v})
	}
	return key(name, pairs)
}
