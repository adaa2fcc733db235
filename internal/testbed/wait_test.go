package testbed

import (
	"errors"
	"fmt"
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
