package testbed

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestAwait(t *testing.T) {
	for _, c := range []struct {
		name     string
		readyAt  int // the call that first succeeds; 0: never
		limit    time.Duration
		wantErr  bool // then the error must be the last one ready returned
		minCalls int
	}{
		{"ready at once", 1, time.Second, false, 1},
		{"ready on the third poll", 3, time.Minute, false, 3},
		{"never ready: the last error", 0, 100 * time.Millisecond, true, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			calls := 0
			err := await(t, "the test condition", c.limit, func() error {
				calls++
				if calls == c.readyAt {
					return nil
				}
				return fmt.Errorf("not yet (call %d)", calls)
			})
			switch {
			case !c.wantErr && err != nil:
				t.Fatalf("err %v after %d calls", err, calls)
			case c.wantErr && (err == nil || err.Error() != fmt.Sprintf("not yet (call %d)", calls)):
				t.Fatalf("err %v after %d calls, want the last error", err, calls)
			case calls < c.minCalls:
				t.Fatalf("%d calls, want at least %d", calls, c.minCalls)
			}
		})
	}
}

// TestAwaitFloor: a caller's short limit does not shorten a wait below
// Patience (what an idle machine needs is not what a busy one does).
func TestAwaitFloor(t *testing.T) {
	start := time.Now()
	calls := 0
	err := Await(t, "the test condition", time.Nanosecond, func() error {
		calls++
		if calls < 2 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 2 {
		t.Fatalf("err %v after %d calls in %v: the 1 ns limit cut the wait short", err, calls, time.Since(start))
	}
}

// errorRecorder records Errorf instead of failing the test.
type errorRecorder struct {
	testing.TB
	errors []string
}

func (e *errorRecorder) Errorf(format string, args ...any) {
	e.errors = append(e.errors, fmt.Sprintf(format, args...))
}
func (e *errorRecorder) Helper()             {}
func (e *errorRecorder) Logf(string, ...any) {}

// TestDeleteRetriesTransientFailures: a cleanup's DELETE retries what a busy
// broker answers for a while (5xx, 429) and gives up quietly when its time
// is up; a refusal that retrying cannot mend fails the test at once.
func TestDeleteRetriesTransientFailures(t *testing.T) {
	for _, c := range []struct {
		name      string
		answers   []int // the status of each request in turn; the last repeats
		limit     time.Duration
		wantCalls int // 0: any
		wantError bool
	}{
		{"deleted at once", []int{http.StatusNoContent}, time.Minute, 1, false},
		{"already gone", []int{http.StatusNotFound}, time.Minute, 1, false},
		{"busy twice, then deleted", []int{http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusNoContent}, time.Minute, 3, false},
		{"never deleted: gives up, logged only", []int{http.StatusInternalServerError}, time.Second, 0, false},
		{"refused: fails at once", []int{http.StatusForbidden}, time.Minute, 1, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := int(calls.Add(1))
				if r.Method != http.MethodDelete {
					t.Errorf("method %s", r.Method)
				}
				w.WriteHeader(c.answers[min(n, len(c.answers))-1])
			}))
			defer srv.Close()
			rec := &errorRecorder{TB: t}
			Broker{MgmtURL: srv.URL}.deleteWithin(rec, queuePath("/", "q"), c.limit)
			n := int(calls.Load())
			if (c.wantCalls > 0 && n != c.wantCalls) || (len(rec.errors) > 0) != c.wantError {
				t.Fatalf("%d requests, errors %q; want %d requests (0: any), an error: %v", n, rec.errors, c.wantCalls, c.wantError)
			}
		})
	}
}
