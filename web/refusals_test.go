package web

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// counterValue reads one counter.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestRedactTarget(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{"rabbit:15672", "rabbit:15672"},
		{"http://user:pw@rabbit:15672/x", "http://<redacted>@rabbit:15672/x"},
		{"user:pw@rabbit", "<redacted>@rabbit"},
		{"http://user:p/w@rabbit", "http://<redacted>@rabbit"},
		{"http://a@b@rabbit", "http://<redacted>@rabbit"},
		{strings.Repeat("x", 300), strings.Repeat("x", 256) + "…"},
	} {
		if got := redactTarget(tc.raw); got != tc.want {
			t.Errorf("redactTarget(%q) = %q, want %q", tc.raw, got, tc.want)
		}
	}
	// An error quoting the target quotes it redacted; one that would still
	// show the user information is not logged.
	raw := "http://user:pw%zz@rabbit"
	if got := targetError(raw, errors.New(`target "http://user:pw%zz@rabbit" is not valid`)); got != `target "http://<redacted>@rabbit" is not valid` {
		t.Errorf("targetError = %q", got)
	}
	if got := targetError(raw, errors.New("bad user:pw%zz")); got != "" {
		t.Errorf("targetError = %q, want nothing", got)
	}
}

// TestOverloadedProbeRefused: a probe that finds no slot before its
// deadline answers 503, is logged with its reason and counted.
func TestOverloadedProbeRefused(t *testing.T) {
	hold := make(chan struct{})
	_, slowAddr := fakeBroker(t, func(http.ResponseWriter, *http.Request) { <-hold })
	h, logs := newTestHandler(t, slowAddr)
	reg := prometheus.NewRegistry()
	h.Refused = NewRefusedCounter(reg)
	h.MaxRequests = 1
	var wg sync.WaitGroup
	wg.Go(func() {
		doScrape(t, h.Probe, "target="+url.QueryEscape(slowAddr), http.Header{"X-Prometheus-Scrape-Timeout-Seconds": {"5"}})
	})
	time.Sleep(100 * time.Millisecond)
	res := doScrape(t, h.Probe, "target="+url.QueryEscape("http://"+slowAddr+"/other"), http.Header{"X-Prometheus-Scrape-Timeout-Seconds": {"0.8"}})
	close(hold)
	wg.Wait()
	if res.status != http.StatusServiceUnavailable {
		t.Fatalf("got %d %q, want 503", res.status, res.body)
	}
	if n := counterValue(t, h.Refused.WithLabelValues(reasonOverloaded)); n != 1 {
		t.Errorf("overloaded refusals counted: %v, want 1", n)
	}
	if !strings.Contains(logs.String(), `msg="scrape refused" endpoint=/probe status=503 reason=overloaded target=http://`+slowAddr+"/other") {
		t.Errorf("no log line for the 503:\n%s", logs)
	}
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || len(mfs[0].GetMetric()) != len(refusalReasons) {
		t.Errorf("gathered %v (%v), want one series per reason, %d", mfs, err, len(refusalReasons))
	}
}
