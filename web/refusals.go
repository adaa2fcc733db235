package web

import (
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Why a scrape was refused: the values of the reason label of
// rabbitmq_queue_exporter_probes_refused_total. A fixed set, never text
// from the request, so a scanner cannot create series.
const (
	reasonBadQuery      = "bad_query"      // 400: malformed query string, unknown or repeated parameter
	reasonQueryTooLong  = "query_too_long" // 414
	reasonBadTarget     = "bad_target"     // 400: target does not parse, or carries user information
	reasonBadTimeout    = "bad_timeout"    // 400: unusable scrape timeout header
	reasonUnknownModule = "unknown_module" // 400
	reasonNotAllowed    = "not_allowed"    // 403: the module's credentials may not go to the target
	reasonOverloaded    = "overloaded"     // 503: no probe slot (or no room to write the answer) within the timeout
)

var refusalReasons = []string{reasonBadQuery, reasonQueryTooLong, reasonBadTarget, reasonBadTimeout, reasonUnknownModule, reasonNotAllowed, reasonOverloaded}

// NewRefusedCounter registers rabbitmq_queue_exporter_probes_refused_total
// with every reason at 0, for Handler.Refused.
func NewRefusedCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rabbitmq_queue_exporter_probes_refused_total",
		Help: "Probes answered 400, 403, 414 or 503 without reading the broker, by reason: bad_query, query_too_long, bad_target, bad_timeout, unknown_module, not_allowed, overloaded.",
	}, []string{"reason"})
	for _, r := range refusalReasons {
		c.WithLabelValues(r)
	}
	reg.MustRegister(c)
	return c
}

// Refusal log lines are limited to a burst of refusalLogBurst, then one per
// refusalLogEvery: a scanner sending thousands of bad probes a second costs
// the log at most that. The lines left out are counted in the next one
// (not_logged) and all refusals in the counter.
const (
	refusalLogBurst = 10
	refusalLogEvery = time.Second
)

// refusalLog writes the rate-limited lines.
type refusalLog struct {
	limiter *rate.Limiter
	skipped atomic.Int64
}

// refusal describes one refused scrape for its log line. Every field is
// bounded and free of secrets: the target is logged only as parsed (or with
// any user information cut out), the module name truncated.
type refusal struct {
	endpoint string // /probe or /metrics
	status   int
	reason   string
	target   string
	module   string
	detail   string
}

// refuse answers a refused scrape with one line and status, counts it, and
// logs it within the rate limit.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, ref refusal, answer string) {
	http.Error(w, answer, ref.status)
	if h.Refused != nil && ref.endpoint == "/probe" {
		h.Refused.WithLabelValues(ref.reason).Inc()
	}
	l := h.refusals()
	if !l.limiter.Allow() {
		l.skipped.Add(1)
		return
	}
	attrs := []any{"endpoint", ref.endpoint, "status", ref.status, "reason", ref.reason}
	if ref.target != "" {
		attrs = append(attrs, "target", ref.target)
	}
	if ref.module != "" {
		attrs = append(attrs, "auth_module", ref.module)
	}
	attrs = append(attrs, "client", r.RemoteAddr)
	if ref.detail != "" {
		attrs = append(attrs, "err", ref.detail)
	}
	if n := l.skipped.Swap(0); n > 0 {
		attrs = append(attrs, "not_logged", n)
	}
	h.Logger.Warn("scrape refused", attrs...)
}

func (h *Handler) refusals() *refusalLog {
	h.refusalOnce.Do(func() {
		h.refusalLog = &refusalLog{limiter: rate.NewLimiter(rate.Every(refusalLogEvery), refusalLogBurst)}
	})
	return h.refusalLog
}

// redactTarget is a raw target as it may be logged: at most 256 bytes, and
// anything up to its last '@' after the scheme cut out, since user
// information is refused but may hold a password (a malformed one may even
// hold a '/').
func redactTarget(raw string) string {
	if start, userinfo := userinfoOf(raw); userinfo != "" {
		raw = raw[:start] + "<redacted>@" + raw[start+len(userinfo)+1:]
	}
	return truncate(raw, 256)
}

// userinfoOf finds what redactTarget cuts out of raw, and where.
func userinfoOf(raw string) (start int, userinfo string) {
	if i := strings.Index(raw, "://"); i >= 0 {
		start = i + 3
	}
	at := strings.LastIndexByte(raw[start:], '@')
	if at < 0 {
		return 0, ""
	}
	return start, raw[start : start+at]
}

// targetError is why raw is not a target, as it may be logged: the error
// may quote raw, user information and all. That quote is replaced by the
// redacted target's, and should the user information still show, in any
// spelling, nothing is logged.
func targetError(raw string, err error) string {
	msg := err.Error()
	_, userinfo := userinfoOf(raw)
	if userinfo == "" {
		return msg
	}
	msg = strings.ReplaceAll(msg, strconv.Quote(raw), strconv.Quote(redactTarget(raw)))
	quoted := strconv.Quote(userinfo)
	if strings.Contains(msg, userinfo) || strings.Contains(msg, quoted[1:len(quoted)-1]) {
		return ""
	}
	return msg
}

// moduleLabel is an auth_module name as it may be logged.
func moduleLabel(name string) string { return truncate(name, 64) }
