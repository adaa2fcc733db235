package prober

import (
	"bufio"
	"compress/gzip"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/collector"
)

// writeMetrics answers with the gathered families followed by the queue
// families, in the format the scraper negotiated (text or OpenMetrics).
// Gather errors are logged and the rest is still served, like promhttp's
// ContinueOnError, so one broken collector does not hide the others.
func (h *Handler) writeMetrics(w http.ResponseWriter, r *http.Request, logger *slog.Logger, g prometheus.Gatherer, queues *collector.QueueSet) {
	mfs, err := g.Gather()
	if err != nil {
		logger.Error("gathering metrics", "err", err)
	}
	format := expfmt.NegotiateIncludingOpenMetrics(r.Header)
	header := w.Header()
	header.Set("Content-Type", string(format))

	var out io.Writer = w
	var gz *gzip.Writer
	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		header.Set("Content-Encoding", "gzip")
		header.Add("Vary", "Accept-Encoding")
		gz, _ = h.gzipPool.Get().(*gzip.Writer)
		if gz == nil {
			// BestSpeed: a 100k-queue answer is tens of MB; fast compression
			// keeps the scrape quick while still shrinking it about tenfold.
			gz, _ = gzip.NewWriterLevel(w, gzip.BestSpeed)
		}
		gz.Reset(w)
		out = gz
	}
	bw, _ := h.bufPool.Get().(*bufio.Writer)
	if bw == nil {
		bw = bufio.NewWriterSize(nil, 64<<10)
	}
	bw.Reset(out)
	defer func() {
		// Write errors mean the scraper went away; there is no one to tell.
		bw.Flush()
		bw.Reset(nil) // do not keep the response alive from the pool
		h.bufPool.Put(bw)
		if gz != nil {
			gz.Close()
			gz.Reset(io.Discard)
			h.gzipPool.Put(gz)
		}
	}()

	enc := expfmt.NewEncoder(bw, format)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			logger.Debug("writing response", "err", err)
			return
		}
	}
	if queues != nil {
		if _, err := queues.WriteTo(bw); err != nil {
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

func acceptsGzip(acceptEncoding string) bool {
	for _, part := range strings.Split(acceptEncoding, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		q := 1.0
		for _, p := range strings.Split(params, ";") {
			if k, v, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.EqualFold(k, "q") {
				if f, err := strconv.ParseFloat(v, 64); err == nil {
					q = f
				}
			}
		}
		return q > 0
	}
	return false
}
