package queueset

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"testing"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
)

func TestDuplicatesAreDroppedAndCounted(t *testing.T) {
	tests := []struct {
		name      string
		queues    []testQueue
		wantLen   int
		wantDups  int
		wantFirst string
	}{
		{name: "repeated entry", wantLen: 2, wantDups: 1, wantFirst: `name="q",vhost="/"`, queues: []testQueue{
			{"/", "q", 1, 1, 0, hasAll}, {"/", "r", 2, 2, 0, hasAll}, {"/", "q", 9, 9, 9, hasAll},
		}},
		{name: "two invalid UTF-8 names become the same label", wantLen: 1, wantDups: 1, wantFirst: "name=\"a\uFFFD\",vhost=\"/\"", queues: []testQueue{
			{"/", "a\xff", 1, 1, 0, hasAll}, {"/", "a\xfe", 2, 2, 0, hasAll},
		}},
		{name: "same name in another vhost is no duplicate", wantLen: 2, queues: []testQueue{
			{"/", "q", 1, 1, 0, hasAll}, {"other", "q", 2, 2, 0, hasAll},
		}},
		{name: "vhost and name swapped is no duplicate", wantLen: 2, queues: []testQueue{
			{"a", "b", 1, 1, 0, hasAll}, {"b", "a", 2, 2, 0, hasAll},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewQueueSet("h", 0)
			for _, q := range tc.queues {
				if err := s.Add([]byte(q.vhost), []byte(q.name), q.counts(), q.has); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Finish(); err != nil {
				t.Fatal(err)
			}
			if s.Len() != tc.wantLen || s.Duplicates() != tc.wantDups || s.FirstDuplicate() != tc.wantFirst {
				t.Fatalf("Len %d Duplicates %d FirstDuplicate %q, want %d %d %q", s.Len(), s.Duplicates(), s.FirstDuplicate(), tc.wantLen, tc.wantDups, tc.wantFirst)
			}
			var out bytes.Buffer
			if _, err := s.WriteTo(&out); err != nil {
				t.Fatal(err)
			}
			// parse fails on a duplicate series; the first queue's values are kept.
			got := sampleMap(parse(t, out.Bytes()))
			first := tc.queues[0]
			key := "rabbitmq_individual_queue_messages|h|" + validUTF8(first.vhost) + "|" + validUTF8(first.name)
			if got[key] != float64(first.messages) {
				t.Fatalf("%s = %v, want the first value %d\n%s", key, got[key], first.messages, out.String())
			}
		})
	}
}

// TestSetMatchesAdd feeds the same queues column by column, in a different
// order per family as a plugin answer may, and expects Add's output exactly.
func TestSetMatchesAdd(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	var qs []testQueue
	for i := range 3000 {
		qs = append(qs, testQueue{fmt.Sprintf("v%d", i%7), fmt.Sprintf("q\"%d", i), int64(i), int64(i / 2), int64(i - i/2), queue.Presence(rng.Intn(8))})
	}
	want := render(t, "h", qs)
	for _, order := range []string{"same", "shuffled"} {
		t.Run(order, func(t *testing.T) {
			s := NewQueueSet("h", 0)
			for f := range queue.NumFields {
				perm := rng.Perm(len(qs))
				for i := range qs {
					q := qs[i]
					if order == "shuffled" {
						q = qs[perm[i]]
					}
					if !q.has.Has(f) {
						continue
					}
					dup, err := s.Set([]byte(q.vhost), []byte(q.name), f, q.counts()[f])
					if err != nil || dup {
						t.Fatalf("Set: dup %v err %v", dup, err)
					}
				}
			}
			var got bytes.Buffer
			if _, err := s.WriteTo(&got); err != nil {
				t.Fatal(err)
			}
			// Queues without any count never reach Set; the rest must match.
			if a, b := sampleMap(parse(t, got.Bytes())), sampleMap(parse(t, want)); fmt.Sprint(a) != fmt.Sprint(b) {
				t.Fatalf("Set and Add disagree")
			}
			missing := 0
			for _, q := range qs {
				if q.has != 0 && q.has != queue.AllPresent {
					missing++
				}
			}
			if s.MissingCounts() != missing {
				t.Fatalf("MissingCounts %d, want %d", s.MissingCounts(), missing)
			}
			if dup, _ := s.Set([]byte(qs[5].vhost), []byte(qs[5].name), 0, 12345); qs[5].has.Has(0) && !dup {
				t.Fatal("a second value for the same count is not reported")
			}
		})
	}
}

func TestMergeKeepsFirstAndCountsDuplicates(t *testing.T) {
	a, b := NewQueueSet("h", 0), NewQueueSet("h", 0)
	for i := range 2000 {
		if err := a.Add([]byte("/"), []byte(fmt.Sprint("a", i)), &queue.Counts{1, 1, 0}, queue.AllPresent); err != nil {
			t.Fatal(err)
		}
		if err := b.Add([]byte("/"), []byte(fmt.Sprint("b", i)), &queue.Counts{2, 2, 0}, queue.AllPresent); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Add([]byte("/"), []byte("a7"), &queue.Counts{9, 9, 0}, queue.AllPresent); err != nil {
		t.Fatal(err)
	}
	if err := a.Merge(b); err != nil {
		t.Fatal(err)
	}
	if err := a.Finish(); err != nil {
		t.Fatal(err)
	}
	if a.Len() != 4000 || a.Duplicates() != 1 || a.FirstDuplicate() != `name="a7",vhost="/"` {
		t.Fatalf("Len %d Duplicates %d %q", a.Len(), a.Duplicates(), a.FirstDuplicate())
	}
	var out bytes.Buffer
	if _, err := a.WriteTo(&out); err != nil {
		t.Fatal(err)
	}
	got := sampleMap(parse(t, out.Bytes()))
	if got["rabbitmq_individual_queue_messages|h|/|a7"] != 1 || got["rabbitmq_individual_queue_messages|h|/|b1999"] != 2 {
		t.Fatal("merged values wrong")
	}
}

// TestMemoryLimit: a listing of many tiny queues must fail at the limit
// instead of growing memory beyond it.
func TestMemoryLimit(t *testing.T) {
	const limit = 1 << 20
	s := NewQueueSet("h", limit)
	var err error
	i := 0
	for ; err == nil && i < 1e6; i++ {
		err = s.Add([]byte("v"), []byte(fmt.Sprint(i)), &queue.Counts{}, 0)
	}
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("no ErrTooLarge after %d queues: %v", i, err)
	}
	if s.allocated > limit+maxBlockBytes+int64(maxEntries*(entrySize+8*s.stride)) || s.allocated < limit/2 {
		t.Fatalf("allocated %d bytes for a limit of %d", s.allocated, limit)
	}
}

// TestDedupeMatchesMap draws names from a small alphabet, so that many repeat,
// and compares Finish with keeping the first occurrence in a map.
func TestDedupeMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for _, n := range []int{2, 10, 300, 5000, 40000} {
		var qs, want []testQueue
		seen := map[string]bool{}
		for i := range n {
			q := testQueue{fmt.Sprint(rng.Intn(3)), fmt.Sprint(rng.Intn(n)), int64(i), 0, 0, queue.AllPresent}
			qs = append(qs, q)
			if !seen[q.vhost+"\x00"+q.name] {
				seen[q.vhost+"\x00"+q.name] = true
				want = append(want, q)
			}
		}
		s := NewQueueSet("h", 0)
		for _, q := range qs {
			if err := s.Add([]byte(q.vhost), []byte(q.name), q.counts(), q.has); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Finish(); err != nil {
			t.Fatal(err)
		}
		if s.Len() != len(want) || s.Duplicates() != n-len(want) {
			t.Fatalf("n %d: Len %d Duplicates %d, want %d %d", n, s.Len(), s.Duplicates(), len(want), n-len(want))
		}
		var got bytes.Buffer
		if _, err := s.WriteTo(&got); err != nil {
			t.Fatal(err)
		}
		if got.String() != string(render(t, "h", want)) {
			t.Fatalf("n %d: output differs from keeping the first of each", n)
		}
	}
}

// TestSetKeepsEveryFamily feeds families in the same order, as the plugin
// writes them, and checks that each queue is stored once with all its
// counts, also after Finish.
func TestSetKeepsEveryFamily(t *testing.T) {
	for _, n := range []int{1, 2, 3, 5000} {
		s := NewQueueSet("h", 0)
		var qs []testQueue
		for i := range n {
			qs = append(qs, testQueue{"/", fmt.Sprintf("q%d", i), int64(3 * i), int64(i), int64(2 * i), hasAll})
		}
		for _, f := range []int{1, 2, 0} {
			for _, q := range qs {
				if dup, err := s.Set([]byte(q.vhost), []byte(q.name), f, q.counts()[f]); dup || err != nil {
					t.Fatalf("Set: dup %v err %v", dup, err)
				}
			}
		}
		if err := s.Finish(); err != nil {
			t.Fatal(err)
		}
		if s.Len() != n || s.Duplicates() != 0 || s.MissingCounts() != 0 {
			t.Fatalf("%d queues: Len %d, Duplicates %d, MissingCounts %d", n, s.Len(), s.Duplicates(), s.MissingCounts())
		}
		var got bytes.Buffer
		if _, err := s.WriteTo(&got); err != nil {
			t.Fatal(err)
		}
		if a, b := sampleMap(parse(t, got.Bytes())), sampleMap(parse(t, render(t, "h", qs))); fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("%d queues: Set after Finish differs from Add", n)
		}
	}
}
