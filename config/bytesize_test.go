package config

import (
	"strings"
	"testing"
)

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]int64{"1000": 1000, "1B": 1, "64KiB": 64 << 10, "512MiB": 512 << 20, "2GiB": 2 << 30, "10MB": 10e6, "3 mib": 3 << 20, "7k": 7 << 10} {
		if got, err := ParseByteSize(in); err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for in, reason := range map[string]string{"": "want a positive number", "0B": "larger than 0", "0": "larger than 0", "-5MiB": "want a positive number", "1.5GiB": "unknown unit", "10 parsecs": "unknown unit", "99999999999999999999": "too large", "9999999999GiB": "too large"} {
		if _, err := ParseByteSize(in); err == nil || !strings.Contains(err.Error(), reason) {
			t.Errorf("ParseByteSize(%q) error = %v, want %q", in, err, reason)
		}
	}
}
