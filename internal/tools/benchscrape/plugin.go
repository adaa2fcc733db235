package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/fakeapi"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
	pluginpkg "github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/source/plugin"
)

// pluginQuery is what the exporter asks each member's rabbitmq_prometheus for.
const pluginQuery = "/metrics/detailed?family=queue_coarse_metrics"

// runPluginFake measures the exporter with --rabbitmq.source=prometheus
// against fakebroker's plugin endpoint (issue 9): interleaved rounds of the
// raw plugin download, a blob as large as the answer and the scrape; then
// the exporter's CPU per scrape and its peak RSS after 8 concurrent plain
// and gzip scrapes.
func runPluginFake(args []string) error {
	fs := flag.NewFlagSet("plugin-fake", flag.ExitOnError)
	var (
		exporter    = fs.String("exporter", "", "exporter base URL (source prometheus, plugin endpoint configured)")
		plugin      = fs.String("plugin", "", "fake plugin base URL")
		style       = fs.String("style", "raw", "the fake plugin's label style, for the table")
		pid         = fs.Int("pid", 0, "exporter process id, for VmHWM and CPU")
		queues      = fs.Int("queues", 0, "queues the fake broker describes (streams included; the plugin answer leaves them out)")
		streamEvery = fs.Int("stream-every", 0, "fakebroker's -stream-every")
		rf          = addRoundFlags(fs)
		concurrency = fs.Int("concurrency", 8, "simultaneous scrapes (plain, then gzip) before reading the peak RSS")
		cpuScrapes  = fs.Int("cpu-scrapes", 20, "back-to-back scrapes to measure the exporter's CPU per scrape over")
		out         = fs.String("out", "", "results file (JSON lines)")
		fields      = fs.String("fields", "", "the exporter's --queue.fields (and fakebroker's -fields); default the depths")
	)
	_ = fs.Parse(args) // ExitOnError: a bad flag exits
	if *exporter == "" || *plugin == "" || *pid == 0 || *out == "" {
		return errors.New("plugin-fake needs -exporter, -plugin, -pid and -out")
	}
	o := fakeapi.Options{Queues: *queues, StreamEvery: *streamEvery}
	expected := 0
	for i := range *queues {
		if o.HasCounts(i) {
			expected++
		}
	}
	chosen, err := queue.ParseList(*fields)
	if err != nil {
		return err
	}
	if !chosen.IsDefault() {
		*style += " " + chosen.Names()
	}
	raw := fetch{url: *plugin + pluginpkg.RequestPath(chosen)}
	scrape := fetch{url: *exporter + "/probe"}
	answer, head, err := firstAnswer(scrape, 2, expected)
	if err != nil {
		return err
	}
	if v, ok := sampleValue(head, `rabbitmq_source_info{host="127.0.0.1",source="prometheus"}`); !ok || v != 1 {
		return fmt.Errorf("the scrape was not served by the plugin source:\n%s", firstLines(head, 30))
	}
	blobURL, stop, err := blobServer(answer, "")
	if err != nil {
		return err
	}
	defer stop()
	blob := fetch{url: blobURL}
	kinds := []timedKind{fetchKind("raw", raw), fetchKind("blob", blob), fetchKind("scrape", scrape)}
	for _, k := range kinds { // warm every connection
		if _, err := k.f(); err != nil {
			return err
		}
	}
	rs, err := rf.measure(kinds, 0)
	if err != nil {
		return err
	}
	samples, bytesOf, round := rs.samples, rs.bytes, rs.rounds
	cpu, err := cpuPerScrape(scrape, *pid, *cpuScrapes)
	if err != nil {
		return err
	}
	gzScrape := scrape
	gzScrape.gzip = true
	for _, f := range []fetch{scrape, gzScrape} {
		if err := simultaneous(f, *concurrency, expected); err != nil {
			return err
		}
	}
	hwm, err := vmHWM(*pid)
	if err != nil {
		return err
	}
	r := result{
		Kind: "plugin-fake", Style: *style, Queues: expected, Runs: round, PeakRSS: hwm,
		ScrapeS: median(samples["scrape"]), RespBytes: bytesOf["scrape"], BrokerBytes: bytesOf["raw"],
		RawS: median(samples["raw"]), BlobS: median(samples["blob"]), Concurrent: *concurrency,
		ExporterCPUS: cpu, Samples: samples,
	}
	r.FloorS = r.RawS + r.BlobS
	fmt.Fprintf(os.Stderr, "  plugin %s, %d queues: scrape %.4fs, floor %.4fs (raw %.4fs + blob %.4fs), peak RSS %.1f MB\n",
		r.Style, r.Queues, r.ScrapeS, r.FloorS, r.RawS, r.BlobS, float64(hwm)/(1<<20))
	return appendResult(*out, r)
}

// simultaneous fires n scrapes at once and checks every answer.
func simultaneous(scrape fetch, n, queues int) error {
	errs := make(chan error, n)
	start := make(chan struct{})
	for range n {
		go func() {
			<-start
			if scrape.gzip {
				errs <- checkGzipScrape(scrape, queues)
				return
			}
			res, err := scrape.do(io.Discard)
			if err == nil {
				err = checkScrape(res.head, queues)
			}
			errs <- err
		}()
	}
	close(start)
	var all []error
	for range n {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// brokerCPU is the broker's CPU time per call of f: calls back to back for
// at least window (and at least minCalls), minus what the broker burns idle
// over the same time (its statistics timers), divided by the calls. The
// kernel counts in 10 ms ticks, hence windows of seconds, not single calls.
func brokerCPU(call func() (fetched, error), brokerPID int, window time.Duration, minCalls int, idlePerSecond float64) (perCall float64, calls int, err error) {
	before, err := procCPU(brokerPID)
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	for calls < minCalls || time.Since(start) < window {
		if _, err := call(); err != nil {
			return 0, calls, err
		}
		calls++
	}
	elapsed := time.Since(start)
	after, err := procCPU(brokerPID)
	if err != nil {
		return 0, calls, err
	}
	busy := (after - before).Seconds() - idlePerSecond*elapsed.Seconds()
	return max(busy, 0) / float64(calls), calls, nil
}

// idleCPU is the broker's CPU per second while nothing asks it anything.
func idleCPU(brokerPID int, window time.Duration) (float64, error) {
	before, err := procCPU(brokerPID)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	time.Sleep(window)
	after, err := procCPU(brokerPID)
	return (after - before).Seconds() / time.Since(start).Seconds(), err
}

// cpuRow is one line of the broker-CPU table.
type cpuRow struct {
	Name     string  `json:"name"`
	PerCallS float64 `json:"broker_cpu_s_per_call"`
	Calls    int     `json:"calls"`
}

// measureBrokerCPU fills the broker-CPU table of a real run: each request
// kind in its own window, an idle window first.
func measureBrokerCPU(kinds []timedKind, brokerPID int, window time.Duration) ([]cpuRow, float64, error) {
	idle, err := idleCPU(brokerPID, window)
	if err != nil {
		return nil, 0, err
	}
	var rows []cpuRow
	for _, k := range kinds {
		time.Sleep(time.Second) // the previous window's aftermath (GC) is not billed to this one
		per, calls, err := brokerCPU(k.f, brokerPID, window, 3, idle)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", k.name, err)
		}
		fmt.Fprintf(os.Stderr, "  broker CPU: %s %.3f s per call over %d calls\n", k.name, per, calls)
		rows = append(rows, cpuRow{Name: k.name, PerCallS: per, Calls: calls})
	}
	return rows, idle, nil
}

// Targets from issue 9.
const (
	maxPluginFloorRatio = 2.0 // fake plugin endpoint, at pluginRatioQueues
	pluginRatioQueues   = 100_000
	maxPluginRealRatio  = 1.3 // exporter end to end vs the raw plugin call, real broker
	maxBrokerCPUShare   = 0.1 // broker CPU per plugin scrape vs per management scrape
)

func reportPluginFake(w io.Writer, plugins []result, verdict func(bool) string) []string {
	if len(plugins) == 0 {
		return nil
	}
	slices.SortFunc(plugins, func(a, b result) int { return cmp.Or(cmp.Compare(a.Style, b.Style), a.Queues-b.Queues) })
	fmt.Fprintln(w, "\nFake rabbitmq_prometheus endpoint, exporter with --rabbitmq.source=prometheus; medians of interleaved rounds (plugin body, blob, scrape):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| labels | queues | scrape s | floor s | ratio | peak RSS MB | response bytes | plugin body bytes | exporter CPU ms per scrape |")
	fmt.Fprintln(w, "|--------|-------:|---------:|--------:|------:|------------:|---------------:|------------------:|---------------------------:|")
	for _, r := range plugins {
		fmt.Fprintf(w, "| %s | %d | %.4f | %.4f | %.2f | %.1f | %d | %d | %.1f |\n",
			r.Style, r.Queues, r.ScrapeS, r.FloorS, r.ScrapeS/r.FloorS, float64(r.PeakRSS)/(1<<20), r.RespBytes, r.BrokerBytes, r.ExporterCPUS*1000)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "floor = download of the plugin body + download of a pre-rendered blob as large as the answer; peak RSS after 8 concurrent plain and 8 gzip scrapes")
	var checks []string
	for _, r := range plugins {
		if r.Queues < pluginRatioQueues {
			continue
		}
		ratio := r.ScrapeS / r.FloorS
		checks = append(checks,
			fmt.Sprintf("%s: plugin source (%s labels) within %.0fx its floor at %d queues (%.2fx)", verdict(ratio <= maxPluginFloorRatio), r.Style, maxPluginFloorRatio, r.Queues, ratio),
			fmt.Sprintf("%s: plugin source (%s labels) peak RSS at %d queues %.1f MB <= %d MB", verdict(r.PeakRSS <= maxPeakRSS), r.Style, r.Queues, float64(r.PeakRSS)/(1<<20), maxPeakRSS>>20))
	}
	return checks
}

func reportRealPlugin(w io.Writer, r result, verdict func(bool) string) []string {
	var checks []string
	if r.PluginRawS > 0 {
		ps, pr := r.Samples["plugin_scrape"], r.Samples["plugin_raw"]
		fmt.Fprintf(w, "\nSame broker, plugin source, median of %d rounds of its own (raw call and scrape alternating):\n", len(pr))
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| request | median s | min s | max s | body bytes |")
		fmt.Fprintln(w, "|---------|---------:|------:|------:|-----------:|")
		fmt.Fprintf(w, "| raw GET %s | %.3f | %.3f | %.3f | %d |\n", pluginQuery, r.PluginRawS, slices.Min(pr), slices.Max(pr), r.PluginBytes)
		fmt.Fprintf(w, "| exporter /probe end to end, source prometheus | %.3f | %.3f | %.3f | %d |\n", r.PluginScrapeS, slices.Min(ps), slices.Max(ps), r.PluginRespBytes)
		ratio := r.PluginScrapeS / r.PluginRawS
		checks = append(checks, fmt.Sprintf("%s: plugin-source scrape within %.1fx the raw plugin call (%.2fx)", verdict(ratio <= maxPluginRealRatio), maxPluginRealRatio, ratio))
	}
	if len(r.BrokerCPU) == 0 {
		return checks
	}
	fmt.Fprintf(w, "\nBroker CPU per call (beam utime+stime over a window of back-to-back calls, minus its idle %.3f s/s):\n\n", r.BrokerIdleCPU)
	fmt.Fprintln(w, "| request | broker CPU s per call | calls |")
	fmt.Fprintln(w, "|---------|----------------------:|------:|")
	byName := map[string]float64{}
	for _, c := range r.BrokerCPU {
		fmt.Fprintf(w, "| %s | %.3f | %d |\n", c.Name, c.PerCallS, c.Calls)
		byName[c.Name] = c.PerCallS
	}
	mgmt, okM := byName["exporter /probe, source management"]
	plug, okP := byName["exporter /probe, source prometheus"]
	if okM && okP && mgmt > 0 {
		share := plug / mgmt
		checks = append(checks, fmt.Sprintf("%s: broker CPU per plugin-source scrape <= %.0f%% of a management-source scrape (%.1f%%, %.3f s vs %.3f s)", verdict(share <= maxBrokerCPUShare), maxBrokerCPUShare*100, share*100, plug, mgmt))
	}
	return checks
}
