package queue

import (
	"strings"
	"testing"
)

func TestSelect(t *testing.T) {
	for _, tc := range []struct {
		list, want, err string
	}{
		{list: "", want: "messages,messages_ready,messages_unacknowledged"},
		{list: " , ", want: "messages,messages_ready,messages_unacknowledged"},
		{list: "consumers,messages", want: "messages,consumers"},
		{list: "head_message_timestamp,consumers,consumers", want: "consumers,head_message_timestamp"},
		{list: "messages,consumer,age", err: `unknown field "consumer", "age" (valid: messages, messages_ready, messages_unacknowledged, consumers, consumer_capacity, head_message_timestamp, message_bytes, messages_persistent, memory)`},
	} {
		fs, err := ParseList(tc.list)
		switch {
		case tc.err != "":
			if err == nil || err.Error() != tc.err {
				t.Errorf("ParseList(%q) error %v, want %s", tc.list, err, tc.err)
			}
		case err != nil:
			t.Errorf("ParseList(%q): %v", tc.list, err)
		case fs.Names() != tc.want:
			t.Errorf("ParseList(%q) = %s, want %s", tc.list, fs.Names(), tc.want)
		}
	}
}

// TestTableRows checks what the sources rely on for every row.
func TestTableRows(t *testing.T) {
	names := map[string]bool{}
	for i, f := range table {
		if f.Name == "" || f.Metric == "" || f.Help == "" || f.Management == "" || f.Group == "" || f.Plugin == "" {
			t.Errorf("row %d (%s) leaves a column empty", i, f.Name)
		}
		if names[f.Name] || names[f.Metric] {
			t.Errorf("row %d repeats %s", i, f.Name)
		}
		names[f.Name], names[f.Metric] = true, true
		if f.Unit != "" && !strings.HasSuffix(f.Metric, "_"+f.Unit) {
			t.Errorf("%s: metric name does not end with its unit %s", f.Metric, f.Unit)
		}
		if i < NumFields && (f.Stats || f.Group != GroupCoarse) {
			t.Errorf("default field %s must come from the totals and queue_coarse_metrics", f.Name)
		}
	}
	if !Fields().IsDefault() || Fields().Stats() || Fields().All() != AllPresent {
		t.Error("the default fields are not the first rows")
	}
}
