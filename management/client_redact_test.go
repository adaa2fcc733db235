package management

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
)

// TestErrorReasonHidesEchoedCredentials: a broker or proxy that reflects the
// credentials in its error page must not get them into the logged reason, in
// any of the spellings it might use.
func TestErrorReasonHidesEchoedCredentials(t *testing.T) {
	const user, password = "monitor", `p&ss"w<rd>-Core42`
	echoes := map[string]func(r *http.Request) string{
		"raw": func(r *http.Request) string { _, pw, _ := r.BasicAuth(); return "<p>bad password " + pw + "</p>" },
		"json": func(r *http.Request) string {
			_, pw, _ := r.BasicAuth()
			reason, _ := json.Marshal("Login failed with " + pw)
			return `{"error":"not_authorized","reason":` + string(reason) + `}`
		},
		"json without HTML escaping": func(r *http.Request) string {
			_, pw, _ := r.BasicAuth()
			return `{"error":"not_authorized","reason":"Login failed with ` + strings.ReplaceAll(pw, `"`, `\"`) + `"}`
		},
		"authorization header": func(r *http.Request) string { return "denied: " + r.Header.Get("Authorization") },
	}
	for name, echo := range echoes {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprint(w, echo(r))
			}))
			defer srv.Close()
			u, _ := url.Parse(srv.URL)
			port, _ := strconv.Atoi(u.Port())
			c := &Client{HTTP: &http.Client{}}
			err := c.ListQueues(context.Background(), config.Target{Scheme: "http", Hostname: "127.0.0.1", Port: port},
				config.Credentials{Username: user, Password: password}, func(*Queue) error { return nil })
			if err == nil {
				t.Fatal("want an error")
			}
			msg := err.Error()
			if strings.Contains(msg, "Core42") || strings.Contains(msg, "bW9uaXRvcj") || !strings.Contains(msg, "<secret>") {
				t.Errorf("reason not redacted: %s", msg)
			}
		})
	}
}
