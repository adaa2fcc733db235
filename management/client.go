package management

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
)

// DefaultMaxBodyBytes bounds one listing (about 2M queues in the lean form).
const DefaultMaxBodyBytes = 512 << 20

// Client lists queues over the management HTTP API.
type Client struct {
	HTTP         *http.Client // from the module: TLS, proxy, connection limits, user agent
	MaxBodyBytes int64
	Limits       DecodeLimits
}

// StatusError is a non-200 answer from the management API.
type StatusError struct {
	Code   int
	Reason string // RabbitMQ's "reason" or a short body excerpt, one line
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
func (c *Client) ListQueues(ctx context.Context, t config.Target, cred config.Credentials, fn func(*Queue) error) error {
	resp, err := c.get(ctx, t, cred, "/api/queues?"+QueuesQuery())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	max := c.MaxBodyBytes
	if max <= 0 {
		max = DefaultMaxBodyBytes
	}
	body := &limitedReader{r: resp.Body, remaining: max}
	if err := DecodeQueues(body, c.Limits, fn); err != nil {
		if body.exceeded {
			return fmt.Errorf("%w (%d bytes; raise --rabbitmq.max-response-bytes)", ErrBodyTooLarge, max)
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
func (c *Client) get(ctx context.Context, t config.Target, cred config.Credentials, path string) (*http.Response, error) {
	ctx = config.WithApprovedTarget(ctx, t)
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
		return nil, &StatusError{Code: resp.StatusCode, Reason: errorReason(resp.Body, secretForms(cred)...)}
	}
	return resp, nil
}

// transportError strips url.Error's repetition of the request URL (it is in the
// log line already) and names timeouts plainly.
func transportError(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return deadlineError(ctx, ctxErr)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("request failed: %w", err)
}

// deadlineError explains why ctx ended; a shared request is ended with a
// cause that says whose deadline it was.
func deadlineError(ctx context.Context, err error) error {
	cause := context.Cause(ctx)
	if cause != nil && cause != err && cause != context.Canceled {
		return cause
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return errors.New("timed out before the listing completed (scrape timeout reached)")
	}
	return errors.New("cancelled before the listing completed")
}

// secretForms are the spellings in which a broker or proxy might echo the
// credentials back in an error page (JSON-escaped, raw, the Basic auth token).
// The token comes first: it does not contain the raw password.
func secretForms(cred config.Credentials) []string {
	pw := string(cred.Password)
	if pw == "" {
		return nil
	}
	forms := []string{base64.StdEncoding.EncodeToString([]byte(cred.Username + ":" + pw))}
	for _, escapeHTML := range []bool{true, false} {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(escapeHTML)
		if enc.Encode(pw) == nil {
			forms = append(forms, strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(b.String()), `"`), `"`))
		}
	}
	return append(forms, pw)
}

// errorReason extracts a one-line explanation from an error body: RabbitMQ's
// JSON {"error":..,"reason":..} or the start of anything else (an HTML proxy page).
// Any of secrets in the body is blanked out first, since the reason is logged.
func errorReason(body io.Reader, secrets ...string) string {
	b, _ := io.ReadAll(io.LimitReader(body, 4096))
	s := string(b)
	for _, secret := range secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, config.Secret(secret).String())
		}
	}
	if i := strings.Index(s, `"reason":"`); i >= 0 {
		rest := s[i+len(`"reason":"`):]
		if j := strings.IndexByte(rest, '"'); j >= 0 {
			s = rest[:j]
		}
	}
	hidden := config.Secret("").String()
	s = htmlTag.ReplaceAllStringFunc(s, func(tag string) string {
		if tag == hidden { // looks like markup, but says a secret was blanked out
			return tag
		}
		return " "
	})
	s = strings.Join(strings.Fields(s), " ")
	var out strings.Builder
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			continue
		}
		out.WriteRune(r)
		if out.Len() >= 200 {
			out.WriteString("…")
			break
		}
	}
	return out.String()
}

// htmlTag matches markup in error pages from proxies, which only adds noise to a log line.
var htmlTag = regexp.MustCompile(`<[^>]*>`)

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
