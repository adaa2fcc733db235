package plugin

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/fakeapi"
)

// heldNames are queue names that read validly both escaped and raw (each
// `\\` is one backslash escaped, two raw), so an answer that has not yet
// told its mode holds them: enough to pass the default held-bytes budget.
func heldNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s%06d", strings.Repeat(`\\`, 120), i)
	}
	return names
}

// TestBudgetsAfterFilters (issue 16, item 6): what a tenant's queue names
// cost the parser (held bytes, splits that read two ways) counts only for
// scrapes whose filters may keep those queues. A scrape filtered to another
// vhost reads the answer; one that includes the tenant's vhost is refused
// as before.
func TestBudgetsAfterFilters(t *testing.T) {
	ordinary := queuesNamed("team-b", "orders", "billing")
	for _, tc := range []struct {
		name    string
		hostile []fakeapi.PluginQueue
		lim     Limits
	}{
		{"held labels over the budget", queuesNamed("tenant-a", heldNames(2000)...), Limits{}},
		{"a split that reads two ways", queuesNamed("tenant-a", `x",queue="y`), Limits{}},
		{"a split that reads two ways, the vhost list resolving neither", queuesNamed("tenant-a", `x",queue="y`), Limits{Vhosts: map[string]bool{"team-b": true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			queues := append(append([]fakeapi.PluginQueue{}, tc.hostile...), ordinary...)
			body := fakeapi.RenderPlugin(fakeapi.PluginRaw, queues, fakeapi.DefaultPluginInfo(fakeapi.PluginRaw))
			onlyB := func(vhost, _ []byte) bool { return string(vhost) == "team-b" }
			r := newRecorder()
			res, err := Parse(bytes.NewReader(body), r, onlyB, tc.lim)
			if err != nil {
				t.Fatalf("filtered to team-b: %v", err)
			}
			if want := truth(t, ordinary); !equalSamples(r.got, want) {
				t.Errorf("filtered to team-b: read\n%s\nwant\n%s", r, formatSamples(want))
			}
			if res.Rejected != 3*len(tc.hostile) {
				t.Errorf("Rejected = %d, want %d", res.Rejected, 3*len(tc.hostile))
			}
			// Scrapes that include the tenant's vhost still refuse the answer.
			for name, keep := range map[string]func(vhost, name []byte) bool{
				"no filter":        nil,
				"tenant-a allowed": func(vhost, _ []byte) bool { return string(vhost) != "nobody" },
			} {
				if _, err := Parse(bytes.NewReader(body), newRecorder(), keep, tc.lim); !errors.Is(err, ErrAmbiguous) {
					t.Errorf("%s: err %v, want ErrAmbiguous", name, err)
				}
			}
		})
	}
}
