package management

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/brokerhttp"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
)

// Client lists queues over the management HTTP API.
type Client struct {
	HTTP         *http.Client // from the module: TLS, proxy, connection limits, user agent
	MaxBodyBytes int64
	Limits       DecodeLimits
	Fields       queue.FieldSet // nil: the default fields
}

func (c *Client) fields() queue.FieldSet {
	if c.Fields == nil {
		return queue.Fields()
	}
	return c.Fields
}

// StatusError is a non-200 answer from the management API.
type StatusError struct {
	Code   int
	Reason string // one line from errorReason: RabbitMQ's reason, or what kind of body was not shown
}

func (e *StatusError) Error() string {
	hint := ""
	switch e.Code {
	case http.StatusUnauthorized:
		hint = " (check the user name and password; the user needs the monitoring, management or administrator tag)"
	case http.StatusNotFound:
		hint = " (is the management plugin enabled, and the target's path prefix right?)"
	}
	msg := fmt.Sprintf("management API answered %d %s%s", e.Code, http.StatusText(e.Code), hint)
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// ErrBodyTooLarge is returned when a listing exceeds MaxBodyBytes.
var ErrBodyTooLarge = errors.New("response body exceeds the configured maximum")

// ListQueues requests the queue listing of t and calls fn for each queue as it
// is decoded. The whole exchange ends when ctx does.
func (c *Client) ListQueues(ctx context.Context, t brokerhttp.Target, cred config.Credentials, fn func(*Queue) error) error {
	resp, err := c.get(ctx, t, cred, "/api/queues?"+QueuesQueryOf(c.fields()))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	limit := c.MaxBodyBytes
	if limit <= 0 {
		limit = config.DefaultMaxBodyBytes
	}
	body := &limitedReader{r: resp.Body, remaining: limit}
	if err := DecodeQueuesOf(body, c.Limits, c.fields(), fn); err != nil {
		if body.exceeded {
			return fmt.Errorf("%w (%d bytes; raise --rabbitmq.max-response-bytes)", ErrBodyTooLarge, limit)
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return deadlineError(ctx, ctxErr)
		}
		return fmt.Errorf("reading queue listing: %w", err)
	}
	return nil
}

// get sends an authenticated GET for path (with query) below t's API root
// and returns the response if it is 200. The caller has checked that cred may
// be sent to t; the client's dialer holds it to that.
func (c *Client) get(ctx context.Context, t brokerhttp.Target, cred config.Credentials, path string) (*http.Response, error) {
	ctx = brokerhttp.WithApprovedTarget(ctx, t)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.BaseURL()+path, nil)
	if err != nil {
		return nil, fmt.Errorf("building request for %s: %w", t, err)
	}
	req.SetBasicAuth(cred.Username, string(cred.Password))
	req.Header.Set("Accept", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, transportError(ctx, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, &StatusError{Code: resp.StatusCode, Reason: errorReason(resp.Body, resp.Header.Get("Content-Type"), cred)}
	}
	return resp, nil
}

// transportError strips url.Error's repetition of the request URL (it is in the
// log line already) and names timeouts plainly.
func transportError(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return deadlineError(ctx, ctxErr)
	}
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	return fmt.Errorf("request failed: %w", err)
}

// deadlineError explains why ctx ended; a shared request is ended with a
// cause that says whose deadline it was.
func deadlineError(ctx context.Context, err error) error {
	cause := context.Cause(ctx)
	if cause != nil && !errors.Is(err, cause) && !errors.Is(cause, context.Canceled) {
		return cause
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return errors.New("timed out before the listing completed (scrape timeout reached)")
	}
	return errors.New("cancelled before the listing completed")
}

type limitedReader struct {
	r         io.Reader
	remaining int64
	exceeded  bool
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.remaining <= 0 {
		// Probe for one more byte to tell "exactly at the limit" from "over it".
		var one [1]byte
		n, err := l.r.Read(one[:])
		if n > 0 {
			l.exceeded = true
			return 0, ErrBodyTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > l.remaining {
		p = p[:l.remaining]
	}
	n, err := l.r.Read(p)
	l.remaining -= int64(n)
	return n, err
}
