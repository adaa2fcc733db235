// Command soak drives a running exporter's /probe at a fixed rate against
// fake brokers it serves itself on loopback (healthy ones, and ones that
// refuse connections, answer 500 or never finish), then checks that nothing
// went wrong and nothing leaked:
//
//   - every answer is 200 with the expected probe_success (and, for healthy
//     brokers, exactly their queues) before the scrape timeout;
//   - the exporter's go_goroutines return to the baseline (+ tolerance);
//   - its process_resident_memory_bytes grew by less than -max-rss-growth.
//
// The baseline is taken after a warm-up at the same rate, so the Go heap has
// reached its working size and only growth that continues counts. Idle
// keep-alive connections on both sides are closed before each measurement,
// so only goroutines that outlive their requests remain.
//
// The exporter must allow the fakes' addresses for its RABBITMQ_HOST
// credentials: --probe.allowed-targets='127\.0\.0\.1:.*'. scripts/soak.sh
// builds and starts one that way. Exit status: 0 pass, 1 fail, 2 usage or
// set-up error.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

type config struct {
	exporter           string
	rate               float64
	duration, warmup   time.Duration
	settle             time.Duration
	targets            int
	queues             int
	scrapeTimeout      time.Duration
	goroutineTolerance float64
	maxRSSGrowth       float64
	maxInFlight        int
	jsonOut            bool
}

func main() {
	var c config
	flag.StringVar(&c.exporter, "exporter", "http://127.0.0.1:9419", "exporter base URL")
	flag.Float64Var(&c.rate, "rate", 100, "probes per second")
	flag.DurationVar(&c.duration, "duration", 60*time.Second, "measured load duration")
	flag.DurationVar(&c.warmup, "warmup", 0, "load before the baseline is taken (default: a tenth of -duration, at least 5s)")
	flag.DurationVar(&c.settle, "settle", 10*time.Second, "how long goroutines may take to come back after the load")
	flag.IntVar(&c.targets, "targets", 20, "fake brokers; every fourth fails (refused, 500, slow in turn), the rest are healthy")
	flag.IntVar(&c.queues, "queues", 50, "queues of the first healthy broker; each further one has one more")
	flag.DurationVar(&c.scrapeTimeout, "scrape-timeout", 2*time.Second, "sent as X-Prometheus-Scrape-Timeout-Seconds; an answer after it is an error")
	flag.Float64Var(&c.goroutineTolerance, "goroutine-tolerance", 5, "goroutines allowed above the baseline after the load")
	flag.Float64Var(&c.maxRSSGrowth, "max-rss-growth", 0.10, "fail when RSS after/before - 1 reaches this")
	flag.IntVar(&c.maxInFlight, "max-inflight", 2000, "probes in flight before new ones count as errors (the exporter stalls)")
	flag.BoolVar(&c.jsonOut, "json", false, "print the report as JSON")
	flag.Parse()
	if c.rate <= 0 || c.duration <= 0 || c.targets < 1 || c.scrapeTimeout <= 0 || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "soak: -rate, -duration, -targets and -scrape-timeout must be positive; no arguments")
		os.Exit(2)
	}
	if c.warmup == 0 {
		// Measured: after 2 s at 50/s the heap still grows (RSS +11-13% later), after 5 s it does not.
		c.warmup = max(c.duration/10, 5*time.Second)
	}
	rep, err := run(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	if c.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		rep.print(os.Stdout)
	}
	if !rep.Pass {
		os.Exit(1)
	}
}

// Broker kinds.
const (
	healthy = "healthy"
	refused = "refused"
	status5 = "http-500"
	slow    = "slow"
)

type fakeBroker struct {
	kind   string
	target string // host:port
	queues int    // healthy: exactly this many queues
	srv    *http.Server
}

// startBrokers serves the fakes on loopback. Every fourth is failing, cycling
// through the three failure kinds; a refused one is a port listened on and
// closed again.
func startBrokers(c config) ([]*fakeBroker, error) {
	var brokers []*fakeBroker
	failing := []string{refused, status5, slow}
	for i := range c.targets {
		b := &fakeBroker{kind: healthy}
		if i%4 == 3 {
			b.kind = failing[(i/4)%len(failing)]
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		b.target = l.Addr().String()
		if b.kind == refused {
			l.Close()
			brokers = append(brokers, b)
			continue
		}
		var h http.HandlerFunc
		switch b.kind {
		case healthy:
			b.queues = c.queues + i
			body := listing(b.queues)
			h = func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Write(body)
			}
		case status5:
			h = func(w http.ResponseWriter, _ *http.Request) {
				http.Error(w, `{"error":"Internal Server Error","reason":"soak"}`, http.StatusInternalServerError)
			}
		case slow:
			// Never answers in time: the exporter must give up at its deadline and
			// hang up, which ends this handler too.
			h = func(_ http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
				case <-time.After(10 * c.scrapeTimeout):
				}
			}
		}
		b.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		go func(srv *http.Server) {
			if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				fmt.Fprintln(os.Stderr, "soak: fake broker stopped:", err)
			}
		}(b.srv)
		brokers = append(brokers, b)
	}
	return brokers, nil
}

// listing is a lean /api/queues body; queue i has i messages, so a mix-up
// between brokers or queues would show.
func listing(n int) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"name":"soak-%d","vhost":"/","messages":%d,"messages_ready":%d,"messages_unacknowledged":0}`, i, i, i)
	}
	b.WriteByte(']')
	return b.Bytes()
}

// closeIdle drops the idle keep-alive connections the exporter holds to the
// fakes, so they do not count as goroutines.
func closeIdle(brokers []*fakeBroker) {
	for _, b := range brokers {
		if b.srv != nil {
			b.srv.SetKeepAlivesEnabled(false)
			b.srv.SetKeepAlivesEnabled(true)
		}
	}
}

type result struct {
	kind    string
	latency time.Duration
	err     string
}

type loadStats struct {
	Probes  int                      `json:"probes"`
	Errors  int                      `json:"errors"`
	Samples []string                 `json:"error_samples,omitempty"` // the first few, for the report
	Latency map[string]latencyReport `json:"latency"`                 // by broker kind and "all"
}

type latencyReport struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_seconds"`
	P90   float64 `json:"p90_seconds"`
	P99   float64 `json:"p99_seconds"`
	Max   float64 `json:"max_seconds"`
}

type processStats struct {
	Goroutines float64 `json:"goroutines"`
	RSSBytes   float64 `json:"rss_bytes"`
}

type report struct {
	Exporter  string         `json:"exporter"`
	Rate      float64        `json:"rate"`
	Duration  string         `json:"duration"`
	Warmup    string         `json:"warmup"`
	Brokers   map[string]int `json:"brokers"`
	Load      loadStats      `json:"load"`
	Before    processStats   `json:"before"`
	After     processStats   `json:"after"`
	RSSGrowth float64        `json:"rss_growth"`
	Failures  []string       `json:"failures,omitempty"`
	Pass      bool           `json:"pass"`
}

func run(c config) (*report, error) {
	base := strings.TrimRight(c.exporter, "/")
	client := &http.Client{
		Timeout:   c.scrapeTimeout + 10*time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 1000, MaxIdleConns: 1000, IdleConnTimeout: time.Minute},
	}
	defer client.CloseIdleConnections()
	if err := waitHealthy(client, base+"/-/healthy", 10*time.Second); err != nil {
		return nil, err
	}
	brokers, err := startBrokers(c)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, b := range brokers {
			if b.srv != nil {
				b.srv.Close()
			}
		}
	}()
	rep := &report{Exporter: base, Rate: c.rate, Duration: c.duration.String(), Warmup: c.warmup.String(), Brokers: map[string]int{}}
	for _, b := range brokers {
		rep.Brokers[b.kind]++
	}
	// A probe the exporter refuses (403: not allowed) would fail every request;
	// say so once rather than thousands of times.
	if err := preflight(client, base, brokers[0]); err != nil {
		return nil, err
	}

	warm := drive(c, client, base, brokers, c.warmup)
	if warm.Errors > 0 {
		rep.Failures = append(rep.Failures, fmt.Sprintf("%d errors during the warm-up, e.g. %s", warm.Errors, warm.Samples[0]))
	}
	closeIdle(brokers)
	client.CloseIdleConnections()
	time.Sleep(500 * time.Millisecond)
	if rep.Before, err = exporterStats(base); err != nil {
		return nil, err
	}

	rep.Load = drive(c, client, base, brokers, c.duration)

	// Settle: in-flight work is over (drive waits), so goroutines must come
	// back once idle connections are gone.
	deadline := time.Now().Add(c.settle)
	for {
		closeIdle(brokers)
		client.CloseIdleConnections()
		time.Sleep(500 * time.Millisecond)
		if rep.After, err = exporterStats(base); err != nil {
			return nil, err
		}
		if rep.After.Goroutines <= rep.Before.Goroutines+c.goroutineTolerance || time.Now().After(deadline) {
			break
		}
	}
	rep.RSSGrowth = rep.After.RSSBytes/rep.Before.RSSBytes - 1

	if rep.Load.Errors > 0 {
		rep.Failures = append(rep.Failures, fmt.Sprintf("%d of %d probes went wrong", rep.Load.Errors, rep.Load.Probes))
	}
	if rep.After.Goroutines > rep.Before.Goroutines+c.goroutineTolerance {
		rep.Failures = append(rep.Failures, fmt.Sprintf("goroutines %v after the load, baseline %v (+%v allowed)", rep.After.Goroutines, rep.Before.Goroutines, c.goroutineTolerance))
	}
	if rep.RSSGrowth >= c.maxRSSGrowth {
		rep.Failures = append(rep.Failures, fmt.Sprintf("RSS grew %.1f%% (limit %.0f%%)", 100*rep.RSSGrowth, 100*c.maxRSSGrowth))
	}
	rep.Pass = len(rep.Failures) == 0
	return rep, nil
}

func waitHealthy(client *http.Client, u string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("exporter not healthy at %s: %w", u, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func preflight(client *http.Client, base string, b *fakeBroker) error {
	resp, err := client.Get(base + "/probe?target=" + url.QueryEscape(b.target))
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the exporter answers %d to a probe of %s: %s (start it with --probe.allowed-targets='127\\.0\\.0\\.1:.*')",
			resp.StatusCode, b.target, strings.TrimSpace(string(body)))
	}
	return nil
}

// drive sends probes at c.rate for d, round-robin over the brokers, without
// waiting for answers (open loop, as independent Prometheus scrapes are), and
// returns once every probe has been answered.
func drive(c config, client *http.Client, base string, brokers []*fakeBroker, d time.Duration) loadStats {
	interval := time.Duration(float64(time.Second) / c.rate)
	var (
		mu       sync.Mutex
		results  []result
		wg       sync.WaitGroup
		inFlight atomic.Int64
	)
	add := func(r result) {
		mu.Lock()
		results = append(results, r)
		mu.Unlock()
	}
	start := time.Now()
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * interval)
		if at.Sub(start) >= d {
			break
		}
		time.Sleep(time.Until(at))
		b := brokers[i%len(brokers)]
		if inFlight.Load() >= int64(c.maxInFlight) {
			add(result{kind: b.kind, err: fmt.Sprintf("more than %d probes in flight", c.maxInFlight)})
			continue
		}
		inFlight.Add(1)
		wg.Go(func() {
			defer inFlight.Add(-1)
			add(probe(c, client, base, b))
		})
	}
	wg.Wait()
	return summarize(results)
}

// probe scrapes one broker through the exporter and checks the answer.
func probe(c config, client *http.Client, base string, b *fakeBroker) result {
	req, _ := http.NewRequest(http.MethodGet, base+"/probe?target="+url.QueryEscape(b.target), nil)
	req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", strconv.FormatFloat(c.scrapeTimeout.Seconds(), 'f', -1, 64))
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return result{kind: b.kind, latency: time.Since(start), err: err.Error()}
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	r := result{kind: b.kind, latency: time.Since(start)}
	switch {
	case err != nil:
		r.err = "reading the answer: " + err.Error()
	case resp.StatusCode != http.StatusOK:
		r.err = fmt.Sprintf("status %d: %.200s", resp.StatusCode, body)
	case r.latency > c.scrapeTimeout:
		r.err = fmt.Sprintf("answered after %v, past the %v scrape timeout", r.latency, c.scrapeTimeout)
	default:
		if msg := checkAnswer(b, body); msg != "" {
			r.err = msg
		}
	}
	if r.err != "" {
		r.err = b.kind + " " + b.target + ": " + r.err
	}
	return r
}

func checkAnswer(b *fakeBroker, body []byte) string {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return "unparsable answer: " + err.Error()
	}
	gauge := func(name string) (float64, bool) {
		mf := mfs[name]
		if mf == nil || len(mf.GetMetric()) != 1 {
			return 0, false
		}
		return mf.GetMetric()[0].GetGauge().GetValue(), true
	}
	success, _ := gauge("probe_success")
	up, upOK := gauge("rabbitmq_up")
	want := 0.0
	if b.kind == healthy {
		want = 1
	}
	if success != want || !upOK || up != want {
		return fmt.Sprintf("probe_success %v, rabbitmq_up %v; want %v", success, up, want)
	}
	if b.kind != healthy {
		return ""
	}
	if n, _ := gauge("rabbitmq_queues"); n != float64(b.queues) {
		return fmt.Sprintf("rabbitmq_queues %v, want %d", n, b.queues)
	}
	mf := mfs["rabbitmq_individual_queue_messages"]
	if mf == nil || len(mf.GetMetric()) != b.queues {
		return fmt.Sprintf("want %d rabbitmq_individual_queue_messages samples", b.queues)
	}
	for _, m := range mf.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "name" && "soak-"+strconv.FormatFloat(m.GetGauge().GetValue(), 'f', -1, 64) != l.GetValue() {
				return fmt.Sprintf("queue %q has %v messages", l.GetValue(), m.GetGauge().GetValue())
			}
		}
	}
	return ""
}

func summarize(results []result) loadStats {
	s := loadStats{Probes: len(results), Latency: map[string]latencyReport{}}
	byKind := map[string][]time.Duration{}
	for _, r := range results {
		if r.err != "" {
			s.Errors++
			if len(s.Samples) < 5 {
				s.Samples = append(s.Samples, r.err)
			}
			continue
		}
		byKind[r.kind] = append(byKind[r.kind], r.latency)
		byKind["all"] = append(byKind["all"], r.latency)
	}
	for kind, ls := range byKind {
		slices.Sort(ls)
		q := func(p float64) float64 {
			return ls[min(len(ls)-1, int(math.Ceil(p*float64(len(ls))))-1)].Seconds()
		}
		s.Latency[kind] = latencyReport{Count: len(ls), P50: q(0.50), P90: q(0.90), P99: q(0.99), Max: ls[len(ls)-1].Seconds()}
	}
	return s
}

// exporterStats reads the exporter's own go_goroutines and
// process_resident_memory_bytes, on a connection of its own that is closed
// afterwards so it is not left idle.
func exporterStats(base string) (processStats, error) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(base + "/metrics")
	if err != nil {
		return processStats{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return processStats{}, fmt.Errorf("/metrics answered %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return processStats{}, fmt.Errorf("/metrics: %w", err)
	}
	var s processStats
	for name, dst := range map[string]*float64{"go_goroutines": &s.Goroutines, "process_resident_memory_bytes": &s.RSSBytes} {
		mf := mfs[name]
		if mf == nil || len(mf.GetMetric()) == 0 {
			return processStats{}, errors.New("/metrics has no " + name)
		}
		m := mf.GetMetric()[0]
		*dst = m.GetGauge().GetValue() + m.GetUntyped().GetValue() + m.GetCounter().GetValue()
	}
	return s, nil
}

func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "soak: %d probes in %s at %g/s (after %s warm-up) against %s; brokers %v\n", r.Load.Probes, r.Duration, r.Rate, r.Warmup, r.Exporter, r.Brokers)
	fmt.Fprintf(w, "errors: %d\n", r.Load.Errors)
	for _, e := range r.Load.Samples {
		fmt.Fprintf(w, "  %s\n", e)
	}
	kinds := make([]string, 0, len(r.Load.Latency))
	for k := range r.Load.Latency {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	fmt.Fprintf(w, "latency       %8s %9s %9s %9s %9s\n", "count", "p50", "p90", "p99", "max")
	for _, k := range kinds {
		l := r.Load.Latency[k]
		ms := func(s float64) string { return strconv.FormatFloat(s*1000, 'f', 1, 64) + "ms" }
		fmt.Fprintf(w, "  %-11s %8d %9s %9s %9s %9s\n", k, l.Count, ms(l.P50), ms(l.P90), ms(l.P99), ms(l.Max))
	}
	fmt.Fprintf(w, "goroutines: before %v, after %v\n", r.Before.Goroutines, r.After.Goroutines)
	fmt.Fprintf(w, "RSS: before %.1f MiB, after %.1f MiB (%+.1f%%)\n", r.Before.RSSBytes/(1<<20), r.After.RSSBytes/(1<<20), 100*r.RSSGrowth)
	if r.Pass {
		fmt.Fprintln(w, "PASS")
		return
	}
	for _, f := range r.Failures {
		fmt.Fprintln(w, "FAIL:", f)
	}
}
