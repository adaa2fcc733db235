package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/scrapetest"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/testbed"
)

// scrapeRecord is one probe of a background scraper.
type scrapeRecord struct {
	source     string
	start, end time.Time
	status     int
	header     http.Header
	body       string
	err        error
}

// scraper probes p every second until stop is closed.
func scraper(p *exporterProc, source string, header http.Header, stop <-chan struct{}, out chan<- scrapeRecord) {
	for {
		start := time.Now()
		r := scrapeRecord{source: source, start: start}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url("/probe"), nil)
		if err == nil {
			req.Header = header.Clone()
			var resp *http.Response
			if resp, err = p.client.Do(req); err == nil {
				var b []byte
				b, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				r.status, r.header, r.body = resp.StatusCode, resp.Header, string(b)
			}
		}
		cancel()
		r.end, r.err = time.Now(), err
		out <- r
		select {
		case <-stop:
			return
		case <-time.After(time.Until(start.Add(time.Second))):
		}
	}
}

// restartTimes are when one member's restart went through its stages.
type restartTimes struct {
	stopBegin, stopped, startBegin, started, pluginBack time.Time
}

// inTransition reports whether r overlaps a member's restart, from the
// start of its stop_app to its plugin listing its queue again.
func inTransition(r scrapeRecord, times map[int]*restartTimes) bool {
	for _, rt := range times {
		if r.end.After(rt.stopBegin) && r.start.Before(rt.pluginBack) {
			return true
		}
	}
	return false
}

// pluginServes polls m's plugin until its answer lists queue, and returns
// when it first did.
// It may run outside the test goroutine, so it returns what failed.
func pluginServes(t *testing.T, m testbed.Member, client *http.Client, vhost, queue string) (time.Time, error) {
	t.Helper()
	want := fmt.Sprintf(`vhost="%s",queue="%s"`, vhost, queue)
	err := testbed.Await(t, m.Node+"'s plugin to list "+queue, testbed.Patience, func() error {
		// A booting member's plugin may take seconds to answer on a busy
		// machine; polling continues after a slow answer.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m.PluginURL+"/metrics/detailed?family=queue_coarse_metrics", nil)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case err != nil:
			return err
		case resp.StatusCode != http.StatusOK:
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		case !strings.Contains(string(b), want):
			return fmt.Errorf("answered without %s", want)
		}
		return nil
	})
	return time.Now(), err
}

// TestFaultRollingRestart (issue 15, item 3): each member of the test
// cluster in turn stops its app and starts it again while one scraper per
// source (prometheus, auto) probes every second. Per scrape: a member's
// queue has a sample exactly when its rabbitmq_node_up is 1, and then its
// exact count; a scrape made while a member is out reports it 0, its queue
// absent and probe_success 0; a scrape begun after its plugin answers again
// has its queue back. Both sources answer every scrape (auto with the
// members read when its management fallback fails too). The gap between
// "plugin answers again" and "queues back" is logged per member.
func TestFaultRollingRestart(t *testing.T) {
	// The seed, whose management API is the target, last.
	restartMembers(t, []restartStep{{member: 4}, {member: 5}, {member: 3}})
}

// TestFaultNodeRestart: as TestFaultRollingRestart, with one member's
// whole VM stopped (SIGTERM, a graceful shutdown) and started again.
func TestFaultNodeRestart(t *testing.T) {
	restartMembers(t, []restartStep{{member: 5, node: true}})
}

// restartStep is one member's restart: its app (stop_app/start_app) or
// its whole node.
type restartStep struct {
	member int
	node   bool
}

func restartMembers(t *testing.T, steps []restartStep) {
	testbed.RequireFaults(t, testbed.TestCluster)
	c := testbed.Cluster(t)
	vhost, names := classicPerMember(t, c, "it.rolling.")
	exporters := map[string]*exporterProc{"prometheus": clusterExporter(t, c, "prometheus"), "auto": clusterExporter(t, c, "auto")}
	allUp := map[int]bool{3: true, 4: true, 5: true}
	for _, p := range exporters {
		waitSamples(t, p, "/probe", 30*time.Second, func(s map[string]float64) string {
			if problem := nodesUpExact(s, c, allUp); problem != "" {
				return problem
			}
			return memberQueuesExact(s, vhost, names, allUp)
		})
	}

	stop := make(chan struct{})
	records := make(chan scrapeRecord, 1024)
	var wg sync.WaitGroup
	for source, p := range exporters {
		wg.Go(func() { scraper(p, source, timeoutHeader("10"), stop, records) })
	}
	var mu sync.Mutex
	var got []scrapeRecord
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for r := range records {
			mu.Lock()
			got = append(got, r)
			mu.Unlock()
		}
	}()
	// scrapesSince waits until every scraper has begun n scrapes after t0.
	scrapesSince := func(t0 time.Time, n int) {
		deadline := time.Now().Add(testbed.Patience)
		for time.Now().Before(deadline) {
			count := map[string]int{}
			mu.Lock()
			for _, r := range got {
				if r.start.After(t0) {
					count[r.source]++
				}
			}
			mu.Unlock()
			if count["prometheus"] >= n && count["auto"] >= n {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("scrapers did not make %d scrapes within %v", n, testbed.Patience)
	}

	var order []int
	times := map[int]*restartTimes{}
	for _, step := range steps {
		i := step.member
		order = append(order, i)
		rt := &restartTimes{stopBegin: time.Now()}
		times[i] = rt
		if step.node {
			testbed.StopNode(t, i)
		} else {
			testbed.StopMember(t, i)
		}
		rt.stopped = time.Now()
		scrapesSince(rt.stopped, 2) // scrapes made while it is out
		rt.startBegin = time.Now()
		var (
			back    time.Time
			backErr error
			pw      sync.WaitGroup
		)
		// Watched from the start on: the plugin may answer before the
		// start command returns.
		client := c.Member(i).PluginClient(t)
		pw.Go(func() { back, backErr = pluginServes(t, c.Member(i), client, vhost, names[i]) })
		if step.node {
			testbed.StartNode(t, i)
		} else {
			testbed.StartMember(t, i)
		}
		rt.started = time.Now()
		pw.Wait()
		if backErr != nil {
			t.Fatalf("rabbit%d restarted: %v", i, backErr)
		}
		rt.pluginBack = back
		scrapesSince(rt.pluginBack, 2)
		testbed.Cluster(t) // contexts listed again before the next member
	}
	close(stop)
	wg.Wait()
	close(records)
	<-collected

	// Judge every scrape.
	judged := map[string]int{}
	for _, r := range got {
		label := fmt.Sprintf("%s scrape at +%v", r.source, r.start.Sub(times[order[0]].stopBegin).Round(time.Millisecond))
		if r.err != nil || r.status != http.StatusOK {
			t.Errorf("%s: status %d, %v", label, r.status, r.err)
			continue
		}
		s := scrapetest.Parse(t, r.header, []byte(r.body))
		// auto falls back to the management listing when a member listed
		// as running does not answer (stopping, starting); that API waits
		// for the member, or is down with the seed, and then the members
		// the plugin listing read answer: auto fails no scrape either.
		if s[scrapetest.Key("rabbitmq_up", "host", "127.0.0.1")] != 1 {
			t.Errorf("%s: rabbitmq_up is not 1:\n%.1500s", label, r.body)
			continue
		}
		viaPlugin := s[scrapetest.Key("rabbitmq_source_info", "host", "127.0.0.1", "source", "prometheus")] == 1
		if r.source == "auto" {
			switch {
			case !viaPlugin:
				judged["auto via the management listing"]++
			case s["probe_success"] == 0 && inTransition(r, times):
				judged["auto partial in a transition"]++
			}
		}
		for _, i := range order {
			rt := times[i]
			v, present := s[queueKey("rabbitmq_individual_queue_messages", "127.0.0.1", vhost, names[i])]
			if present && v != float64(i) {
				t.Errorf("%s: member %d's queue = %v, want %d", label, i, v, i)
			}
			nodeUp, listed := s[nodeUpKey(c.Member(i).Node)]
			// A member that answers has its queue, except while it starts:
			// its plugin may answer before the queue is recovered.
			steady := r.end.Before(rt.stopBegin) || r.start.After(rt.pluginBack)
			if viaPlugin && (!listed || nodeUp != 1 && present || steady && nodeUp == 1 && !present) {
				t.Errorf("%s: member %d: node_up %v (listed %v), its queue present %v", label, i, nodeUp, listed, present)
			}
			if !viaPlugin && steady && !present {
				t.Errorf("%s: member %d is running, the management listing has no count for its queue", label, i)
			}
			out := r.start.After(rt.stopped) && r.end.Before(rt.startBegin)
			back := r.start.After(rt.pluginBack)
			if out {
				judged[r.source+" with a member out"]++
			}
			if back && r.start.Sub(rt.pluginBack) < 5*time.Second {
				judged[r.source+" within 5 s of a plugin answering again"]++
			}
			switch {
			case out && present:
				t.Errorf("%s: member %d is out, its queue has a sample", label, i)
			case out && viaPlugin && (nodeUp != 0 || s["probe_success"] != 0):
				t.Errorf("%s: member %d is out: node_up %v, probe_success %v", label, i, nodeUp, s["probe_success"])
			case back && !present:
				t.Errorf("%s: member %d's plugin answered %v before the scrape began, its queue is missing", label, i, r.start.Sub(rt.pluginBack).Round(time.Millisecond))
			}
		}
	}
	// The gap per member: plugin answers again → first scrape with its queue.
	for _, i := range order {
		rt := times[i]
		for _, source := range []string{"prometheus", "auto"} {
			gap := "never"
			for _, r := range got {
				if r.source != source || r.status != http.StatusOK || r.end.Before(rt.startBegin) {
					continue
				}
				s := scrapetest.Parse(t, r.header, []byte(r.body))
				if _, ok := s[queueKey("rabbitmq_individual_queue_messages", "127.0.0.1", vhost, names[i])]; ok {
					gap = r.end.Sub(rt.pluginBack).Round(time.Millisecond).String()
					break
				}
			}
			t.Logf("rabbit%d, %s: out %v (stop %v); start %v, plugin lists its queue %v after the start began; queue back in a scrape ending %s after that",
				i, source, rt.startBegin.Sub(rt.stopped).Round(time.Millisecond), rt.stopped.Sub(rt.stopBegin).Round(time.Millisecond),
				rt.started.Sub(rt.startBegin).Round(time.Millisecond), rt.pluginBack.Sub(rt.startBegin).Round(time.Millisecond), gap)
		}
	}
	// How long scrapes took: auto's in a transition wait for the
	// management fallback's share of the timeout before answering in part.
	for _, source := range []string{"prometheus", "auto"} {
		var during, steady []time.Duration
		for _, r := range got {
			if r.source != source {
				continue
			}
			if inTransition(r, times) {
				during = append(during, r.end.Sub(r.start))
			} else {
				steady = append(steady, r.end.Sub(r.start))
			}
		}
		t.Logf("%s scrape durations: in a transition %s; otherwise %s", source, durations(during), durations(steady))
	}
	t.Logf("%d scrapes judged: %v", len(got), judged)
	if judged["prometheus with a member out"] < len(order) || judged["prometheus within 5 s of a plugin answering again"] < len(order) {
		t.Errorf("too few scrapes in the windows that matter: %v", judged)
	}
}

// durations summarises ds: count, median and maximum.
func durations(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	slices.Sort(ds)
	return fmt.Sprintf("%d, median %v, max %v", len(ds), ds[len(ds)/2].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
}
