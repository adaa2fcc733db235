package web

import (
	"net/http"
	"sync/atomic"
	"time"
)

// answerWriter is an http.ResponseWriter that adds up how long its Writes
// have waited on the scraper, which tells an answer that is slow to write
// because its scraper does not read (reader-bound, slots.go) from one that
// is slow because the exporter is busy compressing.
type answerWriter struct {
	http.ResponseWriter
	blockedNs atomic.Int64 // in Writes that returned
	since     atomic.Int64 // unix nanoseconds the current Write began; 0 outside one
}

func (w *answerWriter) Write(b []byte) (int, error) {
	start := time.Now()
	w.since.Store(start.UnixNano())
	n, err := w.ResponseWriter.Write(b)
	w.since.Store(0)
	w.blockedNs.Add(int64(time.Since(start)))
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *answerWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// blocked is how long the Writes have waited so far, the current one
// included.
func (w *answerWriter) blocked(now time.Time) time.Duration {
	d := w.blockedNs.Load()
	if s := w.since.Load(); s != 0 {
		d += now.UnixNano() - s
	}
	return time.Duration(d)
}
