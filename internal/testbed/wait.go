package testbed

import (
	"context"
	"testing"
	"time"
)

// Patience caps every wait of a broker test: for a broker to answer, for
// counts to settle, for a member to stop or start, for an exporter to see
// what the broker shows. Generous, since a broker on a busy machine (other
// builds, another node declaring thousands of queues) takes seconds for
// what takes milliseconds when idle; and every wait polls, so a broker that
// is ready costs nothing. A test that must wait says what for (WaitFor).
const Patience = 3 * time.Minute

// requestCap caps one request to a broker's management API or plugin: a
// listing of 10k queues from a loaded broker can take tens of seconds.
const requestCap = 2 * time.Minute

// logEvery is how often a long wait says what it is still waiting for.
const logEvery = 30 * time.Second

// WaitFor calls ready every 500 ms until it returns nil, for at most limit
// (at least Patience when limit is shorter: the caller's figure is what an
// idle machine needs, not what a busy one does). While it waits it logs
// every 30 s what it waits for and the last error; if limit passes it fails
// the test with both. It returns how long it waited.
func WaitFor(t testing.TB, what string, limit time.Duration, ready func() error) time.Duration {
	t.Helper()
	start := time.Now()
	err := Await(t, what, limit, ready)
	waited := time.Since(start)
	if err != nil {
		t.Fatalf("testbed: waited %v for %s: %v", waited.Round(time.Second), what, err)
	}
	if waited > 10*time.Second {
		t.Logf("testbed: waited %v for %s", waited.Round(time.Second), what)
	}
	return waited
}

// Await is WaitFor returning the last error instead of failing, for a test
// that reports what it saw itself.
func Await(t testing.TB, what string, limit time.Duration, ready func() error) error {
	t.Helper()
	return await(t, what, max(limit, Patience), ready)
}

// await polls ready for exactly limit.
func await(t testing.TB, what string, limit time.Duration, ready func() error) error {
	t.Helper()
	start := time.Now()
	nextLog := start.Add(logEvery)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if time.Since(start) > limit {
			return err
		}
		if time.Now().After(nextLog) {
			t.Logf("testbed: still waiting for %s after %v: %v", what, time.Since(start).Round(time.Second), err)
			nextLog = nextLog.Add(logEvery)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// requestContext bounds one request to a broker by requestCap.
func requestContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), requestCap)
}
