package management

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
)

// TestDecodeFields reads a statistics listing with Float fields as 3.10.8
// writes it: integers, fractions, exponents, null and absent keys, on the
// fast path and the general one.
func TestDecodeFields(t *testing.T) {
	fs, err := queue.ParseList("messages,consumers,consumer_capacity,head_message_timestamp")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := QueuesQueryOf(fs), "columns=name,vhost,messages,consumers,consumer_capacity,head_message_timestamp"; got != want {
		t.Errorf("QueuesQueryOf = %s, want %s (no disable_stats: these come from the statistics)", got, want)
	}
	body := `[{"consumer_capacity":0,"consumers":0,"head_message_timestamp":null,"messages":0,"name":"empty","vhost":"v"},` +
		`{"consumer_capacity":1.0,"consumers":2,"head_message_timestamp":1700000000,"messages":5,"name":"busy","vhost":"v"},` +
		`{"consumer_capacity":3.5e-7,"consumers":1,"messages":1,"name":"quorum","vhost":"v"},` +
		`{"consumers":0,"messages":1,"name":"stream","vhost":"v"},` +
		`{ "consumer_capacity" : 1 , "name":"spaced","vhost":"v"}]`
	var got []string
	err = DecodeQueuesOf(strings.NewReader(body), DecodeLimits{}, fs, func(q *Queue) error {
		line := string(q.Name)
		for i, f := range fs {
			switch {
			case !q.Has.Has(i):
				line += " -"
			case f.Float:
				line += fmt.Sprintf(" %g", math.Float64frombits(uint64(q.Counts[i])))
			default:
				line += fmt.Sprintf(" %d", q.Counts[i])
			}
		}
		got = append(got, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"empty 0 0 0 -", "busy 5 2 1 1.7e+09", "quorum 1 1 3.5e-07 -", "stream 1 0 - -", "spaced - - 1 -"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, bad := range []string{`1.`, `.5`, `1e`, `"1"`, `01`} {
		body := `[{"consumer_capacity":` + bad + `,"name":"q","vhost":"v"}]`
		if err := DecodeQueuesOf(strings.NewReader(body), DecodeLimits{}, fs, func(*Queue) error { return nil }); err == nil {
			t.Errorf("consumer_capacity %s accepted", bad)
		}
	}
}
