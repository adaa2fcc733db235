package queueset

import (
	"strconv"
	"strings"
	"testing"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
)

// TestEscapeEveryPosition puts each special byte at every position of values
// of every length around the 4- and 8-byte word boundaries the fast path reads.
func TestEscapeEveryPosition(t *testing.T) {
	ref := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	for n := 0; n <= 40; n++ {
		plain := []byte(strings.Repeat("a.-_/Z9x", 6)[:n])
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

// TestInvalidUTF8BecomesReplacement checks that each byte outside valid UTF-8
// becomes U+FFFD, as encoding/json decodes it, and valid text stays as it is.
func TestInvalidUTF8BecomesReplacement(t *testing.T) {
	for in, want := range map[string]string{
		"ü名":              "ü名",
		"a\xffb":          "a\uFFFDb",
		"\xe5\x90":        "\uFFFD\uFFFD", // a cut 3-byte sequence: one per byte
		"\xc3\x28\"":      "\uFFFD(\\\"",
		"ok\xed\xa0\x80!": "ok\uFFFD\uFFFD\uFFFD!", // an encoded surrogate is invalid
	} {
		if got := string(appendEscaped(nil, []byte(in))); got != want {
			t.Errorf("%q escaped to %q, want %q", in, got, want)
		}
	}
}

// TestBlocksKeepEveryQueue fills many blocks, including a queue whose labels
// exceed a whole block, and compares WriteTo with a line-by-line rendering.
func TestBlocksKeepEveryQueue(t *testing.T) {
	s := NewQueueSet("h", 0)
	var want [queue.NumFields]strings.Builder
	for i := range 5000 {
		name := strings.Repeat("q", i%300) + `"` + strings.Repeat("x", i%7) + strconv.Itoa(i)
		if i == 2500 {
			name = strings.Repeat("long", maxBlockBytes/3)
		}
		vhost := []string{"/", "prod", `v\h`}[i%3]
		has := queue.Presence(i % 8)
		vals := queue.Counts{int64(i), int64(i * 1000003), int64(i % 3)}
		if err := s.Add([]byte(vhost), []byte(name), &vals, has); err != nil {
			t.Fatal(err)
		}
		for f, field := range queue.Fields() {
			if has.Has(f) {
				want[f].WriteString(field.Metric + `{host="h",name="` + string(appendEscaped(nil, []byte(name))) + `",vhost="` + string(appendEscaped(nil, []byte(vhost))) + `"} ` + strconv.FormatInt(vals[f], 10) + "\n")
			}
		}
	}
	if err := s.Finish(); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if _, err := s.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	for f, field := range queue.Fields() {
		all.WriteString(string(appendHeader(nil, &field)))
		all.WriteString(want[f].String())
	}
	if b.String() != all.String() {
		t.Fatalf("WriteTo differs from the reference rendering (%d vs %d bytes)", b.Len(), all.Len())
	}
	if len(s.blocks) < 10 {
		t.Fatalf("only %d blocks; the test should span many", len(s.blocks))
	}
	if s.Len() != 5000 || s.Duplicates() != 0 {
		t.Fatalf("Len %d Duplicates %d", s.Len(), s.Duplicates())
	}
}

// TestBlockExactlyFull makes the worst case (every byte escaped) land at the
// very end of a block, where a short size estimate would cut a label off.
func TestBlockExactlyFull(t *testing.T) {
	for pad := range 40 {
		s := NewQueueSet("h", 0)
		if err := s.Add([]byte("/"), []byte(strings.Repeat("q", pad)), &queue.Counts{1, 1, 0}, queue.AllPresent); err != nil {
			t.Fatal(err)
		}
		left := len(s.cur.labels) - s.cur.used
		// A name of k quotes and the vhost `"` escape to the room left or, for
		// odd room, one byte more: the largest queue that must not fit.
		k := (left - len(`name="",vhost=""} `) - 1) / 2
		if err := s.Add([]byte(`"`), []byte(strings.Repeat(`"`, k)), &queue.Counts{2, 2, 0}, queue.AllPresent); err != nil {
			t.Fatal(err)
		}
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
