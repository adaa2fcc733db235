package main

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/scrapetest"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/testbed"
)

type recoveryProbe struct {
	at       time.Time
	status   int
	success  float64
	up       float64
	duration time.Duration
	err      string
}

// TestFaultRecoveryAfterBrokerRestart stops the second RabbitMQ node under a
// running exporter and starts it again: while it is down every scrape answers
// rabbitmq_up 0 / probe_success 0 by the deadline, and once it is back scrapes
// succeed again from the same exporter process. A background scraper keeps
// probing through the shutdown and the boot, when the node half-answers.
// It runs in the fault pass, alone with the brokers, and leaves the node
// running when the test ends.
func TestFaultRecoveryAfterBrokerRestart(t *testing.T) {
	testbed.RequireFaults(t, testbed.SecondNode)
	b := testbed.Second(t)
	p := startExporter(t, []string{"RABBITMQ_HOST=" + b.MgmtURL, "RABBITMQ_USER=" + b.User, "RABBITMQ_PASSWORD=" + b.Password}, "--no-metrics.queues")
	pid := p.cmd.Process.Pid

	var (
		header        http.Header
		scrapeTimeout time.Duration
	)
	// probe may run outside the test goroutine, so it reports instead of failing.
	probe := func() recoveryProbe {
		start := time.Now()
		r := recoveryProbe{at: start}
		req, _ := http.NewRequest(http.MethodGet, p.url("/probe"), nil)
		req.Header = header
		resp, err := p.client.Do(req)
		if err != nil {
			r.err = err.Error()
			return r
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		r.status, r.duration = resp.StatusCode, time.Since(start)
		if err != nil {
			r.err = err.Error()
			return r
		}
		mfs, err := scrapetest.Decode(resp.Header, body)
		if err != nil {
			r.err = "unparsable answer: " + err.Error()
			return r
		}
		got, err := scrapetest.Flatten(mfs)
		if err != nil {
			r.err = "unparsable answer: " + err.Error()
			return r
		}
		r.success, r.up = got["probe_success"], got[scrapetest.Key("rabbitmq_up", "host", "127.0.0.1")]
		return r
	}
	check := func(phase string, r recoveryProbe) {
		t.Helper()
		if r.err != "" || r.status != http.StatusOK {
			t.Errorf("%s: status %d %s", phase, r.status, r.err)
		}
		if r.duration > scrapeTimeout {
			t.Errorf("%s: the answer took %v, past the %v scrape timeout", phase, r.duration, scrapeTimeout)
		}
		if r.success != r.up {
			t.Errorf("%s: probe_success %v but rabbitmq_up %v", phase, r.success, r.up)
		}
	}

	// The scrape timeout is measured, not fixed: four times what a listing
	// of the node takes now, at least 3 s. Under make test-under-load the
	// node declares thousands of queues and one listing takes seconds.
	header = timeoutHeader(fmt.Sprint(testbed.Patience.Seconds()))
	first := probe()
	if first.success != 1 {
		t.Fatalf("before the stop: probe_success %v, want 1 (%s)\n%s", first.success, first.err, p.logs)
	}
	scrapeTimeout = max(3*time.Second, 4*first.duration).Round(time.Second)
	header = timeoutHeader(fmt.Sprint(scrapeTimeout.Seconds()))
	t.Logf("a listing took %v; probing with a %v scrape timeout", first.duration.Round(time.Millisecond), scrapeTimeout)
	if r := probe(); r.success != 1 {
		t.Fatalf("before the stop: probe_success %v, want 1 (%s)\n%s", r.success, r.err, p.logs)
	}

	// Keep scraping through the stop and the start, as Prometheus would.
	var (
		mu         sync.Mutex
		background []recoveryProbe
		stop       = make(chan struct{})
		done       = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
			r := probe()
			mu.Lock()
			background = append(background, r)
			mu.Unlock()
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	}()

	stopStart := time.Now()
	testbed.StopSecond(t)
	t.Logf("second node stopped in %v", time.Since(stopStart).Round(100*time.Millisecond))
	for i := range 3 {
		r := probe()
		check("node stopped", r)
		if r.success != 0 || r.up != 0 {
			t.Errorf("node stopped, probe %d: probe_success %v rabbitmq_up %v, want 0", i, r.success, r.up)
		}
	}
	if _, ok := waitLogLine(p, 0, []string{listFailed, "target=" + b.MgmtURL}); !ok {
		t.Errorf("no log line saying the listing failed:\n%s", p.logs)
	}

	startStart := time.Now()
	testbed.StartSecond(t)
	t.Logf("second node started in %v", time.Since(startStart).Round(100*time.Millisecond))
	var recovered time.Duration
	for deadline := time.Now().Add(testbed.Patience); ; {
		r := probe()
		check("node restarted", r)
		if r.success == 1 {
			recovered = time.Since(startStart)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no successful probe within %v of the node's restart:\n%s", testbed.Patience, p.logs)
		}
		time.Sleep(250 * time.Millisecond)
	}
	close(stop)
	<-done

	mu.Lock()
	defer mu.Unlock()
	var failed, succeeded int
	for _, r := range background {
		check("background scrape at "+r.at.Format("15:04:05.000"), r)
		if r.success == 1 {
			succeeded++
		} else {
			failed++
		}
	}
	t.Logf("recovered %v after the start began; background scrapes: %d succeeded, %d failed", recovered.Round(100*time.Millisecond), succeeded, failed)
	if p.cmd.ProcessState != nil || p.cmd.Process.Pid != pid {
		t.Fatal("the exporter did not survive the broker restart")
	}
}
