package collector

import (
	"strconv"
	"strings"
	"testing"
)

// TestEscapeEveryPosition puts each special byte at every position of values
// of every length around the 4- and 8-byte word boundaries the fast path reads.
func TestEscapeEveryPosition(t *testing.T) {
	ref := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	for n := 0; n <= 40; n++ {
		plain := []byte(strings.Repeat("a.-_/Z9ü", 6)[:n])
		if got := string(appendEscaped(nil, plain)); got != string(plain) {
			t.Fatalf("clean %q escaped to %q", plain, got)
		}
		if mayNeedEscape(plain) {
			t.Fatalf("typical name %q misses the fast path", plain)
		}
		for i := 0; i < n; i++ {
			for _, c := range []byte{'\\', '"', '\n'} {
				v := append([]byte(nil), plain...)
				v[i] = c
				want := ref.Replace(string(v))
				if got := string(appendEscaped([]byte("prefix"), v)); got != "prefix"+want {
					t.Fatalf("%q escaped to %q, want %q", v, got, want)
				}
				if !mayNeedEscape(v) {
					t.Fatalf("mayNeedEscape(%q) = false", v)
				}
			}
		}
	}
}

// TestBlocksKeepEveryQueue fills many blocks, including a queue whose labels
// exceed a whole block, and compares WriteTo with a line-by-line rendering.
func TestBlocksKeepEveryQueue(t *testing.T) {
	s := NewQueueSet("h")
	var want [3]strings.Builder
	for i := range 5000 {
		name := strings.Repeat("q", i%300) + `"` + strings.Repeat("x", i%7)
		if i == 2500 {
			name = strings.Repeat("long", maxBlockBytes/3)
		}
		vhost := []string{"/", "prod", `v\h`}[i%3]
		has := uint8(i % 8)
		vals := [3]int64{int64(i), int64(i * 1000003), int64(i % 3)}
		s.Add([]byte(vhost), []byte(name), vals[0], vals[1], vals[2], has)
		for f := range Families {
			if has&Families[f].bit != 0 {
				want[f].WriteString(Families[f].Name + `{host="h",name="` + string(appendEscaped(nil, []byte(name))) + `",vhost="` + string(appendEscaped(nil, []byte(vhost))) + `"} ` + strconv.FormatInt(vals[f], 10) + "\n")
			}
		}
	}
	var b strings.Builder
	if _, err := s.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	for f := range Families {
		all.WriteString(string(appendHeader(nil, Families[f])))
		all.WriteString(want[f].String())
	}
	if b.String() != all.String() {
		t.Fatalf("WriteTo differs from the reference rendering (%d vs %d bytes)", b.Len(), all.Len())
	}
	if len(s.blocks) < 10 {
		t.Fatalf("only %d blocks; the test should span many", len(s.blocks))
	}
	if s.Len() != 5000 || s.Samples() != strings.Count(all.String(), "\n")-6 {
		t.Fatalf("Len %d Samples %d", s.Len(), s.Samples())
	}
}

// TestBlockExactlyFull makes the worst case (every byte escaped) land at the
// very end of a block, where a short size estimate would cut a label off.
func TestBlockExactlyFull(t *testing.T) {
	for pad := 0; pad < 40; pad++ {
		s := NewQueueSet("h")
		s.Add([]byte("/"), []byte(strings.Repeat("q", pad)), 1, 1, 0, hasAll)
		left := len(s.cur.labels) - s.cur.used
		// A name of k quotes and the vhost `"` escape to the room left or, for
		// odd room, one byte more: the largest queue that must not fit.
		k := (left - len(`name="",vhost=""} `) - 1) / 2
		s.Add([]byte(`"`), []byte(strings.Repeat(`"`, k)), 2, 2, 0, hasAll)
		var b strings.Builder
		if _, err := s.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		want := `name="` + strings.Repeat(`\"`, k) + `",vhost="\""} 2` + "\n"
		if !strings.Contains(b.String(), want) {
			t.Fatalf("pad %d (k %d, %d bytes left): label cut short", pad, k, left)
		}
	}
}
