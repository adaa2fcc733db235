package source

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/brokerhttp"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queueset"
)

// fakeSource answers with list, or fails with err; hang waits for its
// context instead, and deadline records the deadline it was given.
type fakeSource struct {
	list     *Listing
	err      error
	hang     bool
	deadline time.Time
}

func (f *fakeSource) List(ctx context.Context, _ brokerhttp.Target, _ *config.Module, _ *slog.Logger) (*Listing, error) {
	f.deadline, _ = Deadline(ctx)
	if f.hang {
		<-ctx.Done()
		return nil, context.Cause(ctx)
	}
	return f.list, f.err
}

func listingOf(src config.Source, members ...Member) *Listing {
	qs := queueset.NewQueueSet("h", 0)
	_ = qs.Finish()
	return &Listing{Queues: qs, Source: src, Members: members}
}

// TestFallbackAfterPartial: after a PartialError the fallback gets a share
// of the time left and its listing wins; when it fails or runs out of its
// share, the partial listing answers, the fallback's failure noted. A
// failure without a partial listing falls back with all the time left.
func TestFallbackAfterPartial(t *testing.T) {
	const timeout = 2 * time.Second
	partial := func() *Listing {
		return listingOf(config.SourcePrometheus, Member{Node: "a", Up: true}, Member{Node: "b", Reason: "timed out"})
	}
	mgmt := listingOf(config.SourceManagement)
	for _, tc := range []struct {
		name        string
		first, then *fakeSource
		wantSource  config.Source // "" : the listing fails
		wantErr     string
		wantNote    string // in Fallback or FallbackFailed
		thenAllTime bool   // then's deadline is the scrape's
	}{
		{
			name:  "partial, fallback succeeds",
			first: &fakeSource{err: &PartialError{Listing: partial(), Err: errors.New("member b: timed out")}},
			then:  &fakeSource{list: mgmt}, wantSource: config.SourceManagement, wantNote: "member b: timed out",
		},
		{
			name:  "partial, fallback fails",
			first: &fakeSource{err: &PartialError{Listing: partial(), Err: errors.New("member b: timed out")}},
			then:  &fakeSource{err: errors.New("management answered 500")}, wantSource: config.SourcePrometheus, wantNote: "management answered 500",
		},
		{
			name:  "partial, fallback hangs",
			first: &fakeSource{err: &PartialError{Listing: partial(), Err: errors.New("member b: timed out")}},
			then:  &fakeSource{hang: true}, wantSource: config.SourcePrometheus, wantNote: "share of the scrape timeout",
		},
		{
			name:  "no partial, fallback hangs",
			first: &fakeSource{err: errors.New("no member could be read")},
			then:  &fakeSource{hang: true}, wantErr: "falling back failed too", thenAllTime: true,
		},
		{
			name:  "no partial, fallback succeeds",
			first: &fakeSource{err: errors.New("no member could be read")},
			then:  &fakeSource{list: mgmt}, wantSource: config.SourceManagement, wantNote: "no member could be read", thenAllTime: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			scrapeDeadline, _ := ctx.Deadline()
			l, err := Fallback{First: tc.first, Then: tc.then}.List(ctx, brokerhttp.Target{}, &config.Module{}, slog.New(slog.DiscardHandler))
			if tc.wantSource == "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("want an error with %q, got %+v, %v", tc.wantErr, l, err)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if l.Source != tc.wantSource || !strings.Contains(l.Fallback+l.FallbackFailed, tc.wantNote) {
					t.Errorf("source %s, fallback %q, failed %q; want %s noting %q", l.Source, l.Fallback, l.FallbackFailed, tc.wantSource, tc.wantNote)
				}
				if l.Source == config.SourcePrometheus && (l.Complete() || l.Fallback != "") {
					t.Errorf("partial listing: complete %v, fallback %q", l.Complete(), l.Fallback)
				}
			}
			if got := tc.then.deadline.Equal(scrapeDeadline); got != tc.thenAllTime {
				t.Errorf("fallback's deadline %v, the scrape's %v: want equal %v", tc.then.deadline, scrapeDeadline, tc.thenAllTime)
			}
			if !tc.thenAllTime && !tc.then.deadline.Before(scrapeDeadline.Add(-timeout/10)) {
				t.Errorf("after a partial listing the fallback may run to %v, %v before the scrape's deadline", tc.then.deadline, scrapeDeadline.Sub(tc.then.deadline))
			}
		})
	}
}
