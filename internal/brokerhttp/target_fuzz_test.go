package brokerhttp

import (
	"strings"
	"testing"
)

// FuzzParseTarget: no input panics, errors are one line, and an accepted target
// is stable: its canonical form parses back to the same target and never
// carries userinfo, a query or a fragment.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"localhost", "host:1", "https://h/p/", "[::1]:5", "http://u:p@h", "h?x", "ftp://x", "http://h:99999", "%", "http://[::1%25eth0]:80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tgt, err := ParseTarget(s)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("multi-line error for %q: %q", s, err)
			}
			return
		}
		again, err := ParseTarget(tgt.BaseURL())
		if err != nil || again != tgt {
			t.Fatalf("%q -> %q does not parse back: %+v vs %+v (%v)", s, tgt.BaseURL(), tgt, again, err)
		}
		if strings.Contains(tgt.HostPort(), "@") || strings.ContainsAny(tgt.BaseURL(), "?#") {
			t.Fatalf("%q accepted with userinfo, query or fragment: %q", s, tgt.BaseURL())
		}
	})
}
