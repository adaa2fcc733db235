package web

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/fakeapi"
)

// TestDebugPageShowsDiscoveryAge (issue 15, item 1): the debug page says how
// old the member list a probe used is.
func TestDebugPageShowsDiscoveryAge(t *testing.T) {
	a := &fakeMember{name: "rabbit@127.0.0.1", running: true, plugin: true, queues: []fakeapi.PluginQueue{pq("/", "a1", 1, 1)}}
	c := newFakeCluster(t, a)
	h, _ := c.handler(t, "prometheus", anyLocal)
	if res := doScrape(t, h.Probe, "", nil); res.samples["probe_success"] != 1 {
		t.Fatalf("first probe:\n%s", res.body)
	}
	rec := httptest.NewRecorder()
	h.Probe(rec, httptest.NewRequest(http.MethodGet, "/probe?debug=true", nil))
	if !regexp.MustCompile(`msg="cluster members from the discovery cache" .*age=\d`).MatchString(rec.Body.String()) {
		t.Errorf("the debug page does not show the member list's age:\n%s", rec.Body.String())
	}
}
