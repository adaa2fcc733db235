package fakeapi

import (
	"crypto/subtle"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// RequestsHeader carries the handler's request count (this one included) on
// every listing it serves, so a client can read it without a second request.
const RequestsHeader = "X-Fake-Requests"

// Handler serves a pre-rendered body for GET …/api/queues (any path prefix,
// any query) to clients presenting the configured basic-auth credentials.
// It is safe for concurrent use.
type Handler struct {
	body           []byte
	user, password string
	latency        atomic.Int64 // nanoseconds to wait before answering
	requests       atomic.Int64
}

// NewHandler serves body to user:password.
func NewHandler(body []byte, user, password string) *Handler {
	return &Handler{body: body, user: user, password: password}
}

// Body is the listing served.
func (h *Handler) Body() []byte { return h.body }

// Requests is the number of listing requests received, authorised or not.
func (h *Handler) Requests() int64 { return h.requests.Load() }

// SetLatency delays each answer by d, like a busy broker; benchmarks use it
// to make concurrent scrapes overlap deterministically.
func (h *Handler) SetLatency(d time.Duration) { h.latency.Store(int64(d)) }

// Latency is the current artificial delay.
func (h *Handler) Latency() time.Duration { return time.Duration(h.latency.Load()) }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasSuffix(r.URL.Path, "/api/queues") {
		http.NotFound(w, r)
		return
	}
	n := h.requests.Add(1)
	w.Header().Set(RequestsHeader, strconv.FormatInt(n, 10))
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	user, pass, ok := r.BasicAuth()
	if !ok || subtle.ConstantTimeCompare([]byte(user), []byte(h.user)) != 1 || subtle.ConstantTimeCompare([]byte(pass), []byte(h.password)) != 1 {
		// RabbitMQ's own answer, so the exporter's error path sees the real thing.
		w.Header().Set("WWW-Authenticate", `Basic realm="RabbitMQ Management"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":"not_authorized","reason":"Login failed"}`))
		return
	}
	if d := h.Latency(); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(h.body)))
	w.Header().Set("Cache-Control", "no-cache")
	if r.Method == http.MethodHead {
		return
	}
	w.Write(h.body)
}
