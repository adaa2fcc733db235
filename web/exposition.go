package web

import (
	"bufio"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/pargzip"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queueset"
)

// offeredFormats are the formats a whole answer can be written in, in order
// of preference when the scraper likes several equally. QueueSet writes the
// per-queue families as text lines that are valid in the text format 0.0.4
// and OpenMetrics 0.0.1 and 1.0.0 alike; it has no protobuf writer, so
// protobuf is not offered: Prometheus asks for it only to get native
// histograms, which these answers do not have, and takes OpenMetrics or text
// instead. A scraper asking for text 1.0.0 (Prometheus 3) alone gets 0.0.4,
// which it reads as well (it parses by the answer's Content-Type); expfmt has
// no 1.0.0 writer.
var offeredFormats = []expfmt.Format{
	expfmt.FmtOpenMetrics_1_0_0,
	expfmt.FmtOpenMetrics_0_0_1,
	expfmt.FmtText,
}

// negotiate picks the answer's format from the Accept header; text 0.0.4
// when nothing offered is acceptable. The result carries the escaping the
// scraper asked for; every name written is a legacy Prometheus name, which
// every escaping scheme leaves as it is, so the body is what it says.
func negotiate(h http.Header) expfmt.Format {
	return expfmt.NegotiateAccept(h, offeredFormats...)
}

// vary names the request headers an answer of /metrics and /probe depends
// on, for every answer: a cache must not hand a gzip or OpenMetrics answer
// to a scraper that did not ask for it.
const vary = "Accept, Accept-Encoding"

func setVary(h http.Header) { h.Set("Vary", vary) }

// writeMetrics answers with the gathered families followed by the queue
// families, in the format the scraper negotiated, compressed when it accepts
// gzip. Gather errors are logged and the rest is still served, like
// promhttp's ContinueOnError, so one broken collector does not hide the others.
func (h *Handler) writeMetrics(w http.ResponseWriter, r *http.Request, logger *slog.Logger, g prometheus.Gatherer, queues *queueset.QueueSet) {
	mfs, err := g.Gather()
	if err != nil {
		logger.Error("gathering metrics", "err", err)
	}
	mfs = dropShadowedFamilies(mfs)
	format := negotiate(r.Header)
	header := w.Header()
	setVary(header)
	header.Set("Content-Type", string(format))

	var out io.Writer
	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		header.Set("Content-Encoding", "gzip")
		// The gzip writer gathers its input into segments itself, so no
		// bufio.Writer goes in front of it.
		h.gzipOnce.Do(func() { h.gzip = pargzip.NewPool() })
		zw := h.gzip.NewWriter(w)
		defer func() {
			if err := zw.Close(); err != nil {
				logger.Debug("writing response", "err", err)
			}
		}()
		out = zw
	} else {
		bw, _ := h.bufPool.Get().(*bufio.Writer)
		if bw == nil {
			bw = bufio.NewWriterSize(nil, 64<<10)
		}
		bw.Reset(w)
		defer func() {
			// Write errors mean the scraper went away; there is no one to tell.
			bw.Flush()
			bw.Reset(nil) // do not keep the response alive from the pool
			h.bufPool.Put(bw)
		}()
		out = bw
	}

	enc := expfmt.NewEncoder(out, format)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			logger.Debug("writing response", "err", err)
			return
		}
	}
	if queues != nil {
		if _, err := queues.WriteTo(out); err != nil {
			logger.Debug("writing response", "err", err)
			return
		}
	}
	if closer, ok := enc.(expfmt.Closer); ok {
		if err := closer.Close(); err != nil {
			logger.Debug("writing response", "err", err)
		}
	}
}

// dropShadowedFamilies leaves out every family named X that is not a counter
// when a counter X_total exists. OpenMetrics names a counter's family without
// _total, so both would be family X there: strict parsers (promtool, the
// OpenMetrics parsers of client_python and expfmt) reject the whole answer.
// client_golang's Go collector has one such pair (client_golang#829):
// go_memstats_alloc_bytes, which is also served as go_memstats_heap_alloc_bytes,
// and the counter go_memstats_alloc_bytes_total. The gauge is left out in every
// format, so an answer has the same series whatever was negotiated.
func dropShadowedFamilies(mfs []*dto.MetricFamily) []*dto.MetricFamily {
	var counters map[string]bool
	for _, mf := range mfs {
		if base, ok := strings.CutSuffix(mf.GetName(), "_total"); ok && mf.GetType() == dto.MetricType_COUNTER {
			if counters == nil {
				counters = map[string]bool{}
			}
			counters[base] = true
		}
	}
	if counters == nil {
		return mfs
	}
	kept := mfs[:0:0]
	for _, mf := range mfs {
		if mf.GetType() != dto.MetricType_COUNTER && counters[mf.GetName()] {
			continue
		}
		kept = append(kept, mf)
	}
	return kept
}

// acceptsGzip reports whether an Accept-Encoding header admits gzip: named
// with a non-zero q-value, or through "*" when gzip is not named.
func acceptsGzip(acceptEncoding string) bool {
	star := false
	for part := range strings.SplitSeq(acceptEncoding, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		coding = strings.TrimSpace(coding)
		q := 1.0
		for p := range strings.SplitSeq(params, ";") {
			if k, v, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					q = f
				}
			}
		}
		switch {
		case strings.EqualFold(coding, "gzip"):
			return q > 0
		case coding == "*":
			star = q > 0
		}
	}
	return star
}
