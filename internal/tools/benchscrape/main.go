// Command benchscrape measures whole-process scrapes of the exporter for
// scripts/bench.sh and prints the results table.
//
//	benchscrape freeport                 print a free loopback TCP port
//	benchscrape wait URL...              wait until each URL answers (any status)
//	benchscrape fake [flags]             exporter vs the fake broker: scrape, floor, RSS, singleflight, gzip
//	benchscrape real [flags]             exporter vs a real broker: scrape vs raw request forms, both sources, broker CPU
//	benchscrape plugin-fake [flags]      exporter (source prometheus) vs fakebroker's plugin endpoint: scrape, floor, RSS
//	benchscrape report FILE              print the table and the target verdicts
//
// fake and real append one JSON line per run to -out; report reads them back.
// Every download uses one keep-alive client that does not decompress, so the
// exporter's answer, the broker body and the blobs are fetched the same way;
// the gzip rows ask for gzip by hand and time the compressed download.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/fakeapi"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source/management"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "freeport":
		err = freePort()
	case "wait":
		err = waitAll(args, 30*time.Second)
	case "fake":
		err = runFake(args)
	case "real":
		err = runReal(args)
	case "plugin-fake":
		err = runPluginFake(args)
	case "report":
		if len(args) != 1 {
			usage()
		}
		err = report(args[0], os.Stdout)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchscrape:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: benchscrape freeport | wait URL... | fake [flags] | real [flags] | plugin-fake [flags] | report FILE")
	os.Exit(2)
}

// client is shared by every measurement. Compression is off because Go would
// otherwise ask for gzip and the exporter would spend its time compressing.
var client = &http.Client{
	Timeout: 2 * time.Minute,
	Transport: &http.Transport{
		DisableCompression:  true,
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     time.Minute,
	},
}

func freePort() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	return nil
}

func waitAll(urls []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, u := range urls {
		for {
			resp, err := client.Get(u)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body) // drained for reuse; readiness is all that matters
				resp.Body.Close()
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s did not answer within %s: %w", u, timeout, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// fetch is one timed GET.
type fetch struct {
	url, user, password, accept string
	gzip                        bool // ask for gzip; the body is timed and counted compressed
}

type fetched struct {
	dur    time.Duration
	bytes  int64
	status int
	header http.Header
	head   []byte // the first 64 KiB of the body, when a sink was given
	tail   []byte // its last bytes
}

// do downloads f. Without a sink the body is discarded as it arrives, which
// is what the measurements time; with one it is also copied there, and the
// head (where the meta metrics are) and tail are kept for checks, so even 8
// concurrent 35 MB answers need no memory here.
func (f fetch) do(sink io.Writer) (fetched, error) {
	req, err := http.NewRequest(http.MethodGet, f.url, nil)
	if err != nil {
		return fetched{}, err
	}
	if f.user != "" {
		req.SetBasicAuth(f.user, f.password)
	}
	if f.accept != "" {
		req.Header.Set("Accept", f.accept)
	}
	if f.gzip {
		// Set by hand, the transport neither adds it nor decompresses.
		req.Header.Set("Accept-Encoding", "gzip")
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return fetched{}, err
	}
	defer resp.Body.Close()
	var c *capture
	var n int64
	if sink == nil {
		n, err = io.Copy(io.Discard, resp.Body)
	} else {
		c = &capture{w: sink}
		n, err = io.Copy(c, resp.Body)
	}
	res := fetched{dur: time.Since(start), bytes: n, status: resp.StatusCode, header: resp.Header}
	if c != nil {
		res.head, res.tail = c.head, c.tail
	}
	if err != nil {
		return res, fmt.Errorf("GET %s: %w", f.url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return res, fmt.Errorf("GET %s: status %d", f.url, resp.StatusCode)
	}
	if got := resp.Header.Get("Content-Encoding"); (got == "gzip") != f.gzip {
		return res, fmt.Errorf("GET %s: Content-Encoding %q (gzip asked: %v)", f.url, got, f.gzip)
	}
	return res, nil
}

// capture passes writes on to w, keeping the first 64 KiB and the last 64 bytes.
type capture struct {
	w          io.Writer
	head, tail []byte
}

func (c *capture) Write(p []byte) (int, error) {
	if room := 64<<10 - len(c.head); room > 0 {
		c.head = append(c.head, p[:min(room, len(p))]...)
	}
	c.tail = append(c.tail, p[max(0, len(p)-64):]...)
	if len(c.tail) > 64 {
		c.tail = append(c.tail[:0:0], c.tail[len(c.tail)-64:]...)
	}
	return c.w.Write(p)
}

// result is one JSON line of the results file.
type result struct {
	Kind    string `json:"kind"`            // fake, plugin-fake or real
	Style   string `json:"style,omitempty"` // plugin-fake: raw or escaped
	Queues  int    `json:"queues"`
	Runs    int    `json:"runs"`
	PeakRSS int64  `json:"peak_rss_bytes"`

	ScrapeS     float64 `json:"scrape_s"`
	RespBytes   int64   `json:"response_bytes"`
	BrokerBytes int64   `json:"broker_body_bytes"`

	// fake
	RawS               float64 `json:"raw_s,omitempty"`
	BlobS              float64 `json:"blob_s,omitempty"`
	FloorS             float64 `json:"floor_s,omitempty"`
	Concurrent         int     `json:"concurrent,omitempty"`
	ConcurrentRequests int64   `json:"concurrent_requests,omitempty"`
	ConcurrentLatency  string  `json:"concurrent_latency,omitempty"`
	ExporterCPUS       float64 `json:"exporter_cpu_s_per_scrape,omitempty"`

	// fake, gzip: the same answer asked for with Accept-Encoding: gzip
	GzScrapeS            float64 `json:"gzip_scrape_s,omitempty"`
	GzBlobS              float64 `json:"gzip_blob_s,omitempty"`
	CompressS            float64 `json:"klauspost_bestspeed_s,omitempty"`
	GzFloorS             float64 `json:"gzip_floor_s,omitempty"`
	GzRespBytes          int64   `json:"gzip_response_bytes,omitempty"`
	GzBlobBytes          int64   `json:"gzip_blob_bytes,omitempty"`
	GzExporterCPUS       float64 `json:"gzip_exporter_cpu_s_per_scrape,omitempty"`
	GzConcurrentRequests int64   `json:"gzip_concurrent_requests,omitempty"`

	// real
	Forms []formResult `json:"forms,omitempty"`
	// real, plugin source (issue 9): the exporter with --rabbitmq.source=prometheus
	// against the same broker, the raw plugin call, and the broker's CPU per call.
	PluginScrapeS   float64  `json:"plugin_scrape_s,omitempty"`
	PluginRawS      float64  `json:"plugin_raw_s,omitempty"`
	PluginRespBytes int64    `json:"plugin_response_bytes,omitempty"`
	PluginBytes     int64    `json:"plugin_body_bytes,omitempty"`
	BrokerCPU       []cpuRow `json:"broker_cpu,omitempty"`
	BrokerIdleCPU   float64  `json:"broker_idle_cpu_s_per_s,omitempty"`

	Samples map[string][]float64 `json:"samples_s"`
}

type formResult struct {
	Name    string  `json:"name"`
	Query   string  `json:"query"`
	MedianS float64 `json:"median_s"`
	MinS    float64 `json:"min_s"`
	MaxS    float64 `json:"max_s"`
	Bytes   int64   `json:"bytes"`
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func appendResult(path string, r result) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	return json.NewEncoder(f).Encode(r)
}

// vmHWM reads the peak resident set size of pid from /proc, in bytes.
func vmHWM(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmHWM in /proc status")
}

const openMetricsAccept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"

// checkScrape makes sure a measured scrape is a successful one: a benchmark of
// a failing probe would be fast and meaningless.
func checkScrape(body []byte, queues int) error {
	if v, ok := sampleValue(body, "probe_success"); !ok || v != 1 {
		return fmt.Errorf("probe failed:\n%s", firstLines(body, 20))
	}
	if queues >= 0 {
		if v, ok := sampleValue(body, `rabbitmq_queues{host="127.0.0.1"}`); !ok || v != float64(queues) {
			return fmt.Errorf("response reports %v queues, want %d:\n%s", v, queues, firstLines(body, 20))
		}
	}
	return nil
}

// sampleValue finds the sample whose name and labels are exactly series.
func sampleValue(body []byte, series string) (float64, bool) {
	for line := range strings.Lines(string(body)) {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

func firstLines(b []byte, n int) string {
	lines := strings.SplitN(string(b), "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

// saveFormats saves the answer in both formats for promtool and checks the
// negotiation: text by default, OpenMetrics (ending in one # EOF) on request.
func saveFormats(scrape fetch, dir string, queues int) error {
	base := fmt.Sprintf("%s/scrape-%d", dir, queues)
	save := func(f fetch, path string) (fetched, error) {
		file, err := os.Create(path)
		if err != nil {
			return fetched{}, err
		}
		defer file.Close()
		bw := bufio.NewWriterSize(file, 1<<20)
		res, err := f.do(bw)
		if err == nil {
			err = bw.Flush()
		}
		if err == nil {
			err = checkScrape(res.head, queues)
		}
		return res, err
	}
	text, err := save(scrape, base+".prom")
	if err != nil {
		return err
	}
	if ct := text.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") || !strings.Contains(ct, "version=0.0.4") {
		return fmt.Errorf("default Content-Type %q, want text/plain; version=0.0.4", ct)
	}
	om := scrape
	om.accept = openMetricsAccept
	omRes, err := save(om, base+".openmetrics")
	if err != nil {
		return err
	}
	if ct := omRes.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		return fmt.Errorf("OpenMetrics Content-Type %q", ct)
	}
	if n, err := countEOF(base + ".openmetrics"); err != nil || n != 1 || !bytes.HasSuffix(omRes.tail, []byte("\n# EOF\n")) {
		return fmt.Errorf("OpenMetrics answer must end with its only # EOF line (%d found, %w)", n, err)
	}
	return nil
}

// compressBestSpeed gzips b with klauspost/compress at BestSpeed in one
// goroutine, the reference the gzip floor is made of.
func compressBestSpeed(w io.Writer, b []byte) (int64, error) {
	cw := &countingWriter{w: w}
	zw, err := gzip.NewWriterLevel(cw, gzip.BestSpeed)
	if err != nil {
		return 0, err
	}
	if _, err := zw.Write(b); err != nil {
		return 0, err
	}
	err = zw.Close()
	return cw.n, err
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// checkGzipScrape makes sure the gzip answer is a successful scrape too.
func checkGzipScrape(f fetch, queues int) error {
	var body bytes.Buffer
	if _, err := f.do(&body); err != nil {
		return err
	}
	zr, err := gzip.NewReader(&body)
	if err != nil {
		return fmt.Errorf("gzip answer: %w", err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		return fmt.Errorf("gzip answer: %w", err)
	}
	return checkScrape(plain[:min(len(plain), 64<<10)], queues)
}

func countEOF(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if sc.Text() == "# EOF" {
			n++
		}
	}
	return n, sc.Err()
}

// blobServer serves a pre-rendered byte slice: the cheapest possible way to
// deliver an answer of that size. No Content-Length, so it is sent chunked
// like the exporter's streamed answer. encoding is its Content-Encoding.
// serve runs srv until it is closed; any other end is reported.
func serve(srv *http.Server, ln net.Listener) {
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "benchscrape: server stopped:", err)
	}
}

func blobServer(blob []byte, encoding string) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		if encoding != "" {
			w.Header().Set("Content-Encoding", encoding)
		}
		w.Write(blob)
	})}
	go serve(srv, ln)
	return "http://" + ln.Addr().String() + "/blob", func() { srv.Close() }, nil
}

func runFake(args []string) error {
	fs := flag.NewFlagSet("fake", flag.ExitOnError)
	var (
		exporter    = fs.String("exporter", "", "exporter base URL")
		broker      = fs.String("broker", "", "fake broker base URL")
		user        = fs.String("user", "guest", "broker user")
		password    = fs.String("password", "guest", "broker password")
		pid         = fs.Int("pid", 0, "exporter process id, for VmHWM")
		queues      = fs.Int("queues", 0, "queues the fake broker lists")
		rf          = addRoundFlags(fs)
		warmup      = fs.Int("warmup", 2, "unmeasured scrapes first")
		concurrency = fs.Int("concurrency", 8, "simultaneous scrapes for the singleflight check")
		latency     = fs.Duration("concurrent-latency", 300*time.Millisecond, "broker delay during the concurrency check, so the scrapes overlap for sure")
		cpuScrapes  = fs.Int("cpu-scrapes", 20, "back-to-back scrapes to measure the exporter's CPU time per scrape over")
		save        = fs.String("save", "", "directory to save both formats of one answer in (for promtool)")
		out         = fs.String("out", "", "results file (JSON lines)")
	)
	_ = fs.Parse(args) // ExitOnError: a bad flag exits
	if *exporter == "" || *broker == "" || *pid == 0 || *out == "" {
		return errors.New("fake needs -exporter, -broker, -pid and -out")
	}
	raw := fetch{url: *broker + "/api/queues?" + management.QueuesQuery(), user: *user, password: *password}
	scrape := fetch{url: *exporter + "/probe"}
	// Streams count too: they are listed, just without counts.
	expected := *queues

	answer, _, err := firstAnswer(scrape, *warmup, expected)
	if err != nil {
		return err
	}
	if *save != "" {
		if err := saveFormats(scrape, *save, expected); err != nil {
			return err
		}
	}
	blobURL, stop, err := blobServer(answer, "")
	if err != nil {
		return err
	}
	defer stop()
	blob := fetch{url: blobURL}
	if _, err := blob.do(nil); err != nil { // warm the connection
		return err
	}
	if _, err := raw.do(nil); err != nil {
		return err
	}

	// The gzip floor: the answer compressed by klauspost/compress at
	// BestSpeed, downloaded like the plain blob, plus the time that
	// compression takes here on one core.
	gzScrape := scrape
	gzScrape.gzip = true
	if err := checkGzipScrape(gzScrape, expected); err != nil {
		return err
	}
	var gzAnswer bytes.Buffer
	if _, err := compressBestSpeed(&gzAnswer, answer); err != nil {
		return err
	}
	gzBlobURL, stopGz, err := blobServer(gzAnswer.Bytes(), "gzip")
	if err != nil {
		return err
	}
	defer stopGz()
	gzBlob := fetch{url: gzBlobURL, gzip: true}
	if _, err := gzBlob.do(nil); err != nil {
		return err
	}

	// Rounds interleave the downloads and the compression, rotating their
	// order, so load from elsewhere on the machine hits all of them alike.
	kinds := []timedKind{
		fetchKind("raw", raw),
		fetchKind("blob", blob),
		fetchKind("scrape", scrape),
		fetchKind("gzip_blob", gzBlob),
		{"klauspost_bestspeed", func() (fetched, error) {
			start := time.Now()
			n, err := compressBestSpeed(io.Discard, answer)
			return fetched{dur: time.Since(start), bytes: n}, err
		}},
		fetchKind("gzip_scrape", gzScrape),
	}
	rs, err := rf.measure(kinds, 0)
	if err != nil {
		return err
	}
	samples, bytesOf, round := rs.samples, rs.bytes, rs.rounds
	brokerBytes, respBytes := bytesOf["raw"], bytesOf["scrape"]

	cpu, err := cpuPerScrape(scrape, *pid, *cpuScrapes)
	if err != nil {
		return err
	}
	gzCPU, err := cpuPerScrape(gzScrape, *pid, *cpuScrapes)
	if err != nil {
		return err
	}
	reqs, err := concurrentScrapes(scrape, *broker, *concurrency, *latency, expected)
	if err != nil {
		return err
	}
	// Prometheus asks for gzip by default: the peak RSS must hold for
	// concurrent gzip scrapes too.
	gzReqs, err := concurrentScrapes(gzScrape, *broker, *concurrency, *latency, expected)
	if err != nil {
		return err
	}
	hwm, err := vmHWM(*pid)
	if err != nil {
		return err
	}
	r := result{
		Kind: "fake", Queues: *queues, Runs: round, PeakRSS: hwm,
		ScrapeS: median(samples["scrape"]), RespBytes: respBytes, BrokerBytes: brokerBytes,
		RawS: median(samples["raw"]), BlobS: median(samples["blob"]),
		Concurrent: *concurrency, ConcurrentRequests: reqs, ConcurrentLatency: latency.String(),
		ExporterCPUS: cpu, Samples: samples,
		GzScrapeS: median(samples["gzip_scrape"]), GzBlobS: median(samples["gzip_blob"]), CompressS: median(samples["klauspost_bestspeed"]),
		GzRespBytes: bytesOf["gzip_scrape"], GzBlobBytes: bytesOf["gzip_blob"], GzExporterCPUS: gzCPU,
		GzConcurrentRequests: gzReqs,
	}
	r.FloorS = r.RawS + r.BlobS
	r.GzFloorS = r.RawS + r.GzBlobS + r.CompressS
	fmt.Fprintf(os.Stderr, "  %d queues: scrape %.4fs, floor %.4fs (raw %.4fs + blob %.4fs), peak RSS %.1f MB, %d broker requests for %d scrapes\n",
		r.Queues, r.ScrapeS, r.FloorS, r.RawS, r.BlobS, float64(hwm)/(1<<20), reqs, *concurrency)
	fmt.Fprintf(os.Stderr, "  %d queues, gzip: scrape %.4fs, floor %.4fs (raw %.4fs + gzip blob %.4fs + klauspost BestSpeed %.4fs)\n",
		r.Queues, r.GzScrapeS, r.GzFloorS, r.RawS, r.GzBlobS, r.CompressS)
	return appendResult(*out, r)
}

// cpuPerScrape is the exporter's CPU time (user+sys, from /proc) per scrape
// over n back-to-back scrapes: unlike wall time it hardly depends on what else
// the machine is doing, so it shows where the exporter itself stands.
func cpuPerScrape(scrape fetch, pid, n int) (float64, error) {
	if n <= 0 {
		return 0, nil
	}
	before, err := procCPU(pid)
	if err != nil {
		return 0, err
	}
	for range n {
		if _, err := scrape.do(nil); err != nil {
			return 0, err
		}
	}
	after, err := procCPU(pid)
	return (after - before).Seconds() / float64(n), err
}

// procCPU reads utime+stime of pid. The kernel reports clock ticks, which
// are 10 ms on Linux (USER_HZ 100) on every architecture Go supports there.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the parenthesised command name; utime and stime are fields 14 and 15.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// concurrentScrapes fires n scrapes at once and returns how many listing
// requests the fake broker received meanwhile. The broker is slowed down for
// the duration so that all n overlap however fast the machine is.
func concurrentScrapes(scrape fetch, broker string, n int, latency time.Duration, queues int) (int64, error) {
	setLatency := func(d time.Duration) error {
		resp, err := client.Post(broker+"/-/latency?d="+d.String(), "text/plain", nil)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body) // drained for reuse; the status says it all
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("setting broker latency: status %d", resp.StatusCode)
		}
		return nil
	}
	before, err := brokerRequests(broker)
	if err != nil {
		return 0, err
	}
	if err := setLatency(latency); err != nil {
		return 0, err
	}
	defer func() {
		if err := setLatency(0); err != nil {
			fmt.Fprintln(os.Stderr, "benchscrape: resetting the broker latency:", err)
		}
	}()
	if err := simultaneous(scrape, n, queues); err != nil {
		return 0, err
	}
	after, err := brokerRequests(broker)
	return after - before, err
}

func brokerRequests(broker string) (int64, error) {
	resp, err := client.Get(broker + "/stats")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var st struct {
		Requests int64 `json:"requests"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return 0, fmt.Errorf("reading %s/stats: %w", broker, err)
	}
	return st.Requests, nil
}

// firstAnswer scrapes warmup times, then once more keeping the answer,
// which must be a successful scrape of queues queues; head is its start.
func firstAnswer(scrape fetch, warmup, queues int) (answer, head []byte, err error) {
	for range warmup {
		if _, err := scrape.do(nil); err != nil {
			return nil, nil, err
		}
	}
	var b bytes.Buffer
	first, err := scrape.do(&b)
	if err != nil {
		return nil, nil, err
	}
	return b.Bytes(), first.head, checkScrape(first.head, queues)
}

// timedKind is one kind of step in the measured rounds.
type timedKind struct {
	name string
	f    func() (fetched, error)
}

func fetchKind(name string, f fetch) timedKind {
	return timedKind{name, func() (fetched, error) { return f.do(nil) }}
}

// roundFlags bound the measured rounds: at least runs, and more (up to
// maxRuns) until minTime was spent, so small sizes get many samples and a
// burst of load elsewhere moves the medians less.
type roundFlags struct {
	runs, maxRuns *int
	minTime       *time.Duration
}

func addRoundFlags(fs *flag.FlagSet) roundFlags {
	return roundFlags{
		runs:    fs.Int("runs", 9, "measured rounds at least"),
		minTime: fs.Duration("min-time", 2*time.Second, "keep adding rounds (up to -max-runs) until this much time was spent measuring"),
		maxRuns: fs.Int("max-runs", 200, "most measured rounds"),
	}
}

type roundSamples struct {
	samples map[string][]float64
	bytes   map[string]int64
	rounds  int
}

// measure runs every kind once per round, their order rotating so that load
// from elsewhere on the machine hits all of them alike, with settle before
// each step.
func (rf roundFlags) measure(kinds []timedKind, settle time.Duration) (roundSamples, error) {
	rs := roundSamples{samples: map[string][]float64{}, bytes: map[string]int64{}}
	start := time.Now()
	for ; rs.rounds < *rf.runs || (rs.rounds < *rf.maxRuns && time.Since(start) < *rf.minTime); rs.rounds++ {
		for k := range kinds {
			kind := kinds[(k+rs.rounds)%len(kinds)]
			time.Sleep(settle)
			res, err := kind.f()
			if err != nil {
				return rs, fmt.Errorf("%s: %w", kind.name, err)
			}
			rs.samples[kind.name] = append(rs.samples[kind.name], res.dur.Seconds())
			rs.bytes[kind.name] = res.bytes
		}
	}
	return rs, nil
}

// requestForms are the ways to ask a real broker for the same counts.
var requestForms = []struct{ name, query string }{
	{"columns+disable_stats+totals (exporter)", management.QueuesQuery()},
	{"columns only", "columns=name,vhost,messages,messages_ready,messages_unacknowledged"},
	{"no parameters", ""},
}

func runReal(args []string) error {
	fs := flag.NewFlagSet("real", flag.ExitOnError)
	var (
		exporter = fs.String("exporter", "", "exporter base URL (its --rabbitmq.host is the broker)")
		broker   = fs.String("broker", "http://127.0.0.1:15672", "management API base URL")
		user     = fs.String("user", "guest", "management user")
		password = fs.String("password", "guest", "management password")
		pid      = fs.Int("pid", 0, "exporter process id, for VmHWM")
		runs     = fs.Int("runs", 5, "rounds (each: every request form and one scrape)")
		minRuns  = fs.Int("min-runs", 3, "rounds done even past -budget")
		budget   = fs.Duration("budget", 150*time.Second, "stop starting rounds after this long")
		settle   = fs.Duration("settle", 300*time.Millisecond, "pause before each request, so one request's aftermath (the broker's GC after a 14 MB listing) does not slow the next")
		out      = fs.String("out", "", "results file (JSON lines)")

		pluginExporter = fs.String("plugin-exporter", "", "base URL of a second exporter on the same broker with --rabbitmq.source=prometheus (empty: no plugin rows)")
		plugin         = fs.String("plugin", "http://127.0.0.1:15692", "the broker's rabbitmq_prometheus base URL, for the raw plugin call")
		brokerPID      = fs.Int("broker-pid", 0, "the broker's beam process id, for its CPU per call (0: no CPU table)")
		cpuWindow      = fs.Duration("cpu-window", 10*time.Second, "how long each request kind is repeated for the broker-CPU table")
	)
	_ = fs.Parse(args) // ExitOnError: a bad flag exits
	if *exporter == "" || *pid == 0 || *out == "" {
		return errors.New("real needs -exporter, -pid and -out")
	}
	var pluginScrape, pluginRaw fetch
	if *pluginExporter != "" {
		pluginScrape = fetch{url: *pluginExporter + "/probe"}
		pluginRaw = fetch{url: *plugin + pluginQuery}
		first, err := pluginScrape.do(io.Discard)
		if err != nil {
			return err
		}
		if err := checkScrape(first.head, -1); err != nil {
			return err
		}
		if v, ok := sampleValue(first.head, `rabbitmq_source_info{host="127.0.0.1",source="prometheus"}`); !ok || v != 1 {
			return fmt.Errorf("the plugin exporter's scrape was not served by the plugin:\n%s", firstLines(first.head, 30))
		}
	}
	scrape := fetch{url: *exporter + "/probe"}
	first, err := scrape.do(io.Discard)
	if err != nil {
		return err
	}
	if err := checkScrape(first.head, -1); err != nil {
		return err
	}
	queues := scrapedQueues(first.head)

	type kind struct {
		name string
		f    fetch
	}
	var kinds []kind
	for _, f := range requestForms {
		u := *broker + "/api/queues"
		if f.query != "" {
			u += "?" + f.query
		}
		kinds = append(kinds, kind{f.name, fetch{url: u, user: *user, password: *password}})
	}
	kinds = append(kinds, kind{"scrape", scrape})
	samples := map[string][]float64{}
	bytesOf := map[string]int64{}
	start := time.Now()
	done := 0
	for round := 0; round < *runs && (round < *minRuns || time.Since(start) < *budget); round++ {
		for k := range kinds {
			kd := kinds[(k+round)%len(kinds)]
			time.Sleep(*settle)
			res, err := kd.f.do(nil)
			if err != nil {
				return err
			}
			samples[kd.name] = append(samples[kd.name], res.dur.Seconds())
			bytesOf[kd.name] = res.bytes
		}
		done++
		fmt.Fprintf(os.Stderr, "  real broker round %d/%d done (%s)\n", done, *runs, time.Since(start).Round(time.Second))
	}
	hwm, err := vmHWM(*pid)
	if err != nil {
		return err
	}
	r := result{
		Kind: "real", Queues: queues, Runs: done, PeakRSS: hwm,
		ScrapeS: median(samples["scrape"]), RespBytes: bytesOf["scrape"], BrokerBytes: bytesOf[requestForms[0].name],
		Samples: samples,
	}
	for _, f := range requestForms {
		r.Forms = append(r.Forms, formResult{Name: f.name, Query: f.query, MedianS: median(samples[f.name]),
			MinS: slices.Min(samples[f.name]), MaxS: slices.Max(samples[f.name]), Bytes: bytesOf[f.name]})
	}
	if *pluginExporter != "" {
		// Rounds of their own: calls of ~40 ms interleaved with listings of
		// seconds would mostly measure the broker's aftermath of those.
		minRounds, maxRounds, minTime := 15, 1000, 10*time.Second
		ps, err := roundFlags{&minRounds, &maxRounds, &minTime}.measure(
			[]timedKind{fetchKind("plugin_raw", pluginRaw), fetchKind("plugin_scrape", pluginScrape)}, 100*time.Millisecond)
		if err != nil {
			return err
		}
		maps.Copy(r.Samples, ps.samples)
		r.PluginScrapeS, r.PluginRawS = median(ps.samples["plugin_scrape"]), median(ps.samples["plugin_raw"])
		r.PluginRespBytes, r.PluginBytes = ps.bytes["plugin_scrape"], ps.bytes["plugin_raw"]
	}
	if *brokerPID > 0 {
		cpuKinds := []timedKind{
			fetchKind("GET /api/queues (the management source's request)", kinds[0].f),
			fetchKind("exporter /probe, source management", scrape),
			fetchKind("GET /api/nodes?columns=name,running,contexts", fetch{url: *broker + "/api/nodes?columns=name,running,contexts", user: *user, password: *password}),
		}
		if *pluginExporter != "" {
			cpuKinds = append(cpuKinds,
				fetchKind("GET "+pluginQuery+" (the plugin source's request)", pluginRaw),
				fetchKind("exporter /probe, source prometheus", pluginScrape))
		}
		if r.BrokerCPU, r.BrokerIdleCPU, err = measureBrokerCPU(cpuKinds, *brokerPID, *cpuWindow); err != nil {
			return err
		}
	}
	return appendResult(*out, r)
}

// scrapedQueues reads rabbitmq_queues from an answer.
func scrapedQueues(body []byte) int {
	v, ok := sampleValue(body, `rabbitmq_queues{host="127.0.0.1"}`)
	if !ok {
		return -1
	}
	return int(v)
}

// Targets from issue 4.
const (
	maxFloorRatio   = 2.0
	maxPeakRSS      = 64 << 20
	maxScaleRatio   = 11.0
	maxRealRatio    = 1.15
	floorRatioSizes = 10000 // the floor target applies from this size up
	// Issue 11: a gzip scrape of 100k queues within 1.3x of its floor.
	maxGzipFloorRatio = 1.3
	gzipRatioQueues   = 100000
)

func report(path string, w io.Writer) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var fakes, reals, plugins []result
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		var r result
		if err := dec.Decode(&r); err == io.EOF {
			break
		} else if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		switch r.Kind {
		case "real":
			reals = append(reals, r)
		case "plugin-fake":
			plugins = append(plugins, r)
		default:
			fakes = append(fakes, r)
		}
	}
	slices.SortFunc(fakes, func(a, b result) int { return a.Queues - b.Queues })

	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	var checks []string
	if len(fakes) > 0 {
		fmt.Fprintf(w, "Fake broker (lean listing, %d%% streams without counts); medians of interleaved rounds (raw body, blob, scrape):\n\n", 100/fakeapi.DefaultStreamEvery)
		fmt.Fprintln(w, "| queues | scrape s | floor s | ratio | peak RSS MB | response bytes | broker body bytes | requests for 8 concurrent scrapes |")
		fmt.Fprintln(w, "|-------:|---------:|--------:|------:|------------:|---------------:|------------------:|----------------------------------:|")
		for _, r := range fakes {
			fmt.Fprintf(w, "| %d | %.4f | %.4f | %.2f | %.1f | %d | %d | %d |\n",
				r.Queues, r.ScrapeS, r.FloorS, r.ScrapeS/r.FloorS, float64(r.PeakRSS)/(1<<20), r.RespBytes, r.BrokerBytes, r.ConcurrentRequests)
		}
		fmt.Fprintln(w)
		fmt.Fprintln(w, "floor = download of the exporter's exact broker request + download of a pre-rendered blob as large as the answer")
		for _, r := range fakes {
			sc := r.Samples["scrape"]
			fmt.Fprintf(w, "  %d queues: %d rounds, scrape min/max %.4f/%.4f s, raw %.4f s, blob %.4f s, exporter CPU %.1f ms per scrape\n",
				r.Queues, r.Runs, slices.Min(sc), slices.Max(sc), r.RawS, r.BlobS, r.ExporterCPUS*1000)
		}
		fmt.Fprintln(w, "\nGzip (Accept-Encoding: gzip, as Prometheus asks by default), same rounds:")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| queues | gzip scrape s | gzip floor s | ratio | klauspost BestSpeed s | gzip response bytes | exporter CPU ms per gzip scrape |")
		fmt.Fprintln(w, "|-------:|--------------:|-------------:|------:|----------------------:|--------------------:|--------------------------------:|")
		for _, r := range fakes {
			if r.GzFloorS == 0 {
				continue // results of a benchscrape without the gzip rows
			}
			fmt.Fprintf(w, "| %d | %.4f | %.4f | %.2f | %.4f | %d | %.1f |\n",
				r.Queues, r.GzScrapeS, r.GzFloorS, r.GzScrapeS/r.GzFloorS, r.CompressS, r.GzRespBytes, r.GzExporterCPUS*1000)
		}
		fmt.Fprintln(w)
		fmt.Fprintln(w, "gzip floor = download of the broker body + download of the answer gzipped by klauspost/compress BestSpeed + that compression's time on one core here")
		byN := map[int]result{}
		for _, r := range fakes {
			if r.Queues == gzipRatioQueues && r.GzFloorS > 0 {
				ratio := r.GzScrapeS / r.GzFloorS
				checks = append(checks, fmt.Sprintf("%s: gzip scrape within %.1fx its floor at %d queues (%.2fx)", verdict(ratio <= maxGzipFloorRatio), maxGzipFloorRatio, r.Queues, ratio))
			}
			byN[r.Queues] = r
			if r.Queues >= floorRatioSizes {
				checks = append(checks, fmt.Sprintf("%s: scrape within %.0fx floor at %d queues (%.2fx)", verdict(r.ScrapeS <= maxFloorRatio*r.FloorS), maxFloorRatio, r.Queues, r.ScrapeS/r.FloorS))
			}
			checks = append(checks, fmt.Sprintf("%s: %d concurrent scrapes of %d queues made %d broker request(s), want 1", verdict(r.ConcurrentRequests == 1), r.Concurrent, r.Queues, r.ConcurrentRequests))
			if r.GzConcurrentRequests > 0 {
				checks = append(checks, fmt.Sprintf("%s: %d concurrent gzip scrapes of %d queues made %d broker request(s), want 1", verdict(r.GzConcurrentRequests == 1), r.Concurrent, r.Queues, r.GzConcurrentRequests))
			}
		}
		if r, ok := byN[100000]; ok {
			checks = append(checks, fmt.Sprintf("%s: peak RSS at 100k queues %.1f MB <= %d MB (8 concurrent scrapes, plain and gzip, included)", verdict(r.PeakRSS <= maxPeakRSS), float64(r.PeakRSS)/(1<<20), maxPeakRSS>>20))
			if s, ok := byN[10000]; ok {
				ratio := r.ScrapeS / s.ScrapeS
				checks = append(checks, fmt.Sprintf("%s: time(100k)/time(10k) = %.1f <= %.0f", verdict(ratio <= maxScaleRatio), ratio, maxScaleRatio))
			}
		}
	}
	checks = append(checks, reportPluginFake(w, plugins, verdict)...)
	for _, r := range reals {
		fmt.Fprintf(w, "\nReal RabbitMQ broker, %d queues listed, median of %d rounds (request forms and scrape interleaved):\n\n", r.Queues, r.Runs)
		fmt.Fprintln(w, "| request | median s | min s | max s | body bytes |")
		fmt.Fprintln(w, "|---------|---------:|------:|------:|-----------:|")
		cheapest := r.Forms[0]
		for _, f := range r.Forms {
			fmt.Fprintf(w, "| raw GET /api/queues %s | %.3f | %.3f | %.3f | %d |\n", f.Name, f.MedianS, f.MinS, f.MaxS, f.Bytes)
			if f.MedianS < cheapest.MedianS {
				cheapest = f
			}
		}
		ratio := r.ScrapeS / cheapest.MedianS
		sc := r.Samples["scrape"]
		fmt.Fprintf(w, "| exporter /probe end to end | %.3f | %.3f | %.3f | %d |\n\n", r.ScrapeS, slices.Min(sc), slices.Max(sc), r.RespBytes)
		fmt.Fprintf(w, "cheapest raw form: %s; scrape / cheapest = %.2f; exporter peak RSS %.1f MB\n", cheapest.Name, ratio, float64(r.PeakRSS)/(1<<20))
		checks = append(checks, fmt.Sprintf("%s: real broker scrape within %.2fx the cheapest raw request (%.2fx)", verdict(ratio <= maxRealRatio), maxRealRatio, ratio))
		checks = append(checks, reportRealPlugin(w, r, verdict)...)
	}
	fmt.Fprintln(w, "\nTargets:")
	for _, c := range checks {
		fmt.Fprintln(w, "  "+c)
	}
	return nil
}
