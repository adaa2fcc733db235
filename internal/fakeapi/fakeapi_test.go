package fakeapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

type queue struct {
	Name                   string `json:"name"`
	Vhost                  string `json:"vhost"`
	Messages               *int64 `json:"messages"`
	MessagesReady          *int64 `json:"messages_ready"`
	MessagesUnacknowledged *int64 `json:"messages_unacknowledged"`
}

func decode(t *testing.T, body []byte) []queue {
	t.Helper()
	var qs []queue
	if err := json.Unmarshal(body, &qs); err != nil {
		t.Fatalf("generated body is not valid JSON: %v", err)
	}
	return qs
}

func TestGenerate(t *testing.T) {
	for _, shape := range []Shape{Lean, Full} {
		for _, o := range []Options{
			{Queues: 0, Shape: shape},
			{Queues: 1, Vhosts: 1, Shape: shape},
			{Queues: 1000, Vhosts: 7, StreamEvery: DefaultStreamEvery, Shape: shape},
			{Queues: 1234, Vhosts: 3, StreamEvery: 1, Shape: shape},
		} {
			body := Generate(o)
			qs := decode(t, body)
			if len(qs) != o.Queues {
				t.Fatalf("%s %+v: %d queues, want %d", shape, o, len(qs), o.Queues)
			}
			names := map[string]bool{}
			withCounts := 0
			for i, q := range qs {
				if q.Name != QueueName(i) || q.Vhost != VhostName(i%max(o.Vhosts, 1)) {
					t.Fatalf("queue %d is %q in %q, want %q in %q", i, q.Name, q.Vhost, QueueName(i), VhostName(i%max(o.Vhosts, 1)))
				}
				names[q.Name] = true
				if !o.HasCounts(i) {
					if q.Messages != nil || q.MessagesReady != nil || q.MessagesUnacknowledged != nil {
						t.Fatalf("queue %d should be listed without counts", i)
					}
					continue
				}
				withCounts++
				m, r, u := Counts(i)
				if q.Messages == nil || q.MessagesReady == nil || q.MessagesUnacknowledged == nil ||
					*q.Messages != m || *q.MessagesReady != r || *q.MessagesUnacknowledged != u {
					t.Fatalf("queue %d counts differ from Counts(%d) = %d %d %d", i, i, m, r, u)
				}
				if m != r+u || r < 0 || u < 0 {
					t.Fatalf("queue %d: inconsistent counts %d %d %d", i, m, r, u)
				}
			}
			if len(names) != o.Queues {
				t.Fatalf("%d distinct names for %d queues", len(names), o.Queues)
			}
			if o.StreamEvery == 1 && withCounts != 0 {
				t.Fatalf("StreamEvery 1 must leave every queue without counts")
			}
			if o.StreamEvery == DefaultStreamEvery && withCounts != o.Queues-o.Queues/DefaultStreamEvery {
				t.Fatalf("%d of %d queues with counts", withCounts, o.Queues)
			}
		}
	}
}

// TestLeanKeyOrder pins the broker's key order for the columns= query, which
// the streaming decoder's benchmarks depend on to be representative.
func TestLeanKeyOrder(t *testing.T) {
	body := string(Generate(Options{Queues: 2, Vhosts: 2, StreamEvery: 2}))
	want := `[{"messages":` // then ready, unacked, name, vhost
	if !strings.HasPrefix(body, want) {
		t.Fatalf("body starts %q", body[:40])
	}
	first, _, ok := strings.Cut(body, "},")
	if !ok {
		t.Fatalf("body has no second object: %q", body[:40])
	}
	last := -1
	for _, k := range []string{`"messages":`, `"messages_ready":`, `"messages_unacknowledged":`, `"name":`, `"vhost":`} {
		i := strings.Index(first, k)
		if i <= last {
			t.Fatalf("key %s out of order in %s", k, first)
		}
		last = i
	}
	if !strings.HasSuffix(body, `{"name":"`+QueueName(1)+`","vhost":"prod"}]`) {
		t.Fatalf("stream should carry only name and vhost: %s", body)
	}
}

func TestFullShapeLooksLikeTheFixture(t *testing.T) {
	body := Generate(Options{Queues: 2, StreamEvery: 2, Shape: Full})
	var raw []map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw[0]) < 40 || raw[0]["type"] != "classic" || raw[1]["type"] != "stream" {
		t.Fatalf("unexpected full shape: %d keys, types %v %v", len(raw[0]), raw[0]["type"], raw[1]["type"])
	}
	if per := len(body) / 2; per < 1000 {
		t.Fatalf("full shape is only %d bytes per queue", per)
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote`, `back\slash`, "nl\n\x01", "ünï/名"} {
		var got string
		if err := json.Unmarshal(appendJSONString(nil, s), &got); err != nil || got != s {
			t.Errorf("%q round-trips to %q, %v", s, got, err)
		}
	}
}

func TestHandler(t *testing.T) {
	body := Generate(Options{Queues: 10, Vhosts: 2})
	h := NewHandler(body, "monitor", "secret")
	srv := httptest.NewServer(h)
	defer srv.Close()

	get := func(path, user, pass string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}

	resp, got := get("/api/queues?columns=name,vhost", "monitor", "secret")
	if resp.StatusCode != 200 || !bytes.Equal(got, body) || resp.Header.Get(RequestsHeader) != "1" || resp.ContentLength != int64(len(body)) {
		t.Fatalf("status %d, %d bytes, count %q", resp.StatusCode, len(got), resp.Header.Get(RequestsHeader))
	}
	if resp, _ := get("/prefix/api/queues", "monitor", "secret"); resp.StatusCode != 200 {
		t.Fatalf("path prefix: status %d", resp.StatusCode)
	}
	if resp, b := get("/api/queues", "monitor", "wrong"); resp.StatusCode != 401 || !strings.Contains(string(b), "Login failed") {
		t.Fatalf("bad password: status %d %s", resp.StatusCode, b)
	}
	if resp, _ := get("/api/queues", "", ""); resp.StatusCode != 401 {
		t.Fatalf("no credentials: status %d", resp.StatusCode)
	}
	if resp, _ := get("/api/overview", "monitor", "secret"); resp.StatusCode != 404 {
		t.Fatalf("other path: status %d", resp.StatusCode)
	}
	if n := h.Requests(); n != 4 {
		t.Fatalf("Requests() = %d, want 4 (the 404 is not a listing)", n)
	}

	h.SetLatency(150 * time.Millisecond)
	var wg sync.WaitGroup
	start := time.Now()
	for range 3 {
		wg.Go(func() { get("/api/queues", "monitor", "secret") })
	}
	wg.Wait()
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("latency not applied: %v", d)
	}
	if n := h.Requests(); n != 7 {
		t.Fatalf("Requests() = %d, want 7", n)
	}
}
