package management

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/brokerhttp"
)

// The password has every character class that some encoding changes: HTML specials, quote,
// space, '+', '/', '%', non-ASCII, both cases.
const redactUser, redactPassword = "monitor", `Pä&ss "w<rd>/+%Core42`

var redactCred = config.Credentials{Username: redactUser, Password: redactPassword}

// echoEncodings are the spellings in which a broker or a proxy might plausibly echo the
// credentials it was sent.
var echoEncodings = map[string]func(user, pw string) string{
	"raw":                 func(_, pw string) string { return pw },
	"upper case":          func(_, pw string) string { return strings.ToUpper(pw) },
	"JSON escaped":        func(_, pw string) string { return jsonString(pw) },
	"JSON \\u escaped":    func(_, pw string) string { return uEscape(pw) },
	"HTML named entities": func(_, pw string) string { return html.EscapeString(pw) },
	"HTML decimal entities": func(_, pw string) string {
		return entities(pw, func(r rune) string { return "&#" + strconv.Itoa(int(r)) + ";" })
	},
	"HTML hex entities": func(_, pw string) string {
		return entities(pw, func(r rune) string { return fmt.Sprintf("&#x%x;", r) })
	},
	"HTML upper hex entities": func(_, pw string) string {
		return entities(pw, func(r rune) string { return fmt.Sprintf("&#X%X;", r) })
	},
	"percent-encoded upper case": func(_, pw string) string { return percentAll(pw, "%%%02X") },
	"percent-encoded lower case": func(_, pw string) string { return percentAll(pw, "%%%02x") },
	"query escaped":              func(_, pw string) string { return url.QueryEscape(pw) },
	"path escaped":               func(_, pw string) string { return url.PathEscape(pw) },
	"userinfo in a URL":          func(user, pw string) string { return url.UserPassword(user, pw).String() + "@host" },
	"hex":                        func(_, pw string) string { return hex.EncodeToString([]byte(pw)) },
	"upper hex":                  func(_, pw string) string { return strings.ToUpper(hex.EncodeToString([]byte(pw))) },
	"base64 of the password":     func(_, pw string) string { return base64.StdEncoding.EncodeToString([]byte(pw)) },
	"base64url of the password":  func(_, pw string) string { return base64.RawURLEncoding.EncodeToString([]byte(pw)) },
	"Authorization header":       func(user, pw string) string { return "Basic " + basicToken(user, pw) },
	"basic token glued to text":  func(user, pw string) string { return "token" + basicToken(user, pw) },
	"base64 at offset 1": func(user, pw string) string {
		return base64.StdEncoding.EncodeToString([]byte("x" + user + ":" + pw + "y"))
	},
	"base64 at offset 2": func(user, pw string) string {
		return base64.StdEncoding.EncodeToString([]byte("xy" + pw))
	},
	"percent-encoded twice":  func(_, pw string) string { return url.QueryEscape(url.QueryEscape(pw)) },
	"HTML of percent":        func(_, pw string) string { return html.EscapeString(percentAll(pw, "%%%02X")) },
	"percent of HTML":        func(_, pw string) string { return url.QueryEscape(html.EscapeString(pw)) },
	"JSON inside JSON":       func(_, pw string) string { return jsonString(jsonString(pw)) },
	"HTML entities twice":    func(_, pw string) string { return html.EscapeString(html.EscapeString(pw)) },
	"base64 of percent":      func(_, pw string) string { return base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(pw))) },
	"JavaScript \\x escapes": func(_, pw string) string { return xEscape(pw) },
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}

func uEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		fmt.Fprintf(&b, `\u%04x`, r)
	}
	return b.String()
}

func xEscape(s string) string {
	var b strings.Builder
	for i := range len(s) {
		fmt.Fprintf(&b, `\x%02x`, s[i])
	}
	return b.String()
}

func entities(s string, f func(rune) string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteString(f(r))
	}
	return b.String()
}

func percentAll(s, format string) string {
	var b strings.Builder
	for i := range len(s) {
		fmt.Fprintf(&b, format, s[i])
	}
	return b.String()
}

func basicToken(user, pw string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pw))
}

// checkNoLeak fails when msg holds the password, or a piece of it long enough to matter, in
// clear or as echoed.
func checkNoLeak(t *testing.T, msg, echo string) {
	t.Helper()
	lower := strings.ToLower(msg)
	for n := 4; n <= len(redactPassword); n++ {
		for i := 0; i+n <= len(redactPassword); i++ {
			if strings.Contains(lower, strings.ToLower(redactPassword[i:i+n])) {
				t.Fatalf("message shows %q of the password: %s", redactPassword[i:i+n], msg)
			}
		}
	}
	if echo != "" && strings.Contains(msg, echo) {
		t.Fatalf("message shows the echo %q: %s", echo, msg)
	}
}

// TestErrorReasonWithholdsEchoes: whatever the spelling of an echo of the credentials, in a
// RabbitMQ JSON error or in an HTML page, the reason never shows it.
func TestErrorReasonWithholdsEchoes(t *testing.T) {
	for name, encode := range echoEncodings {
		echo := encode(redactUser, redactPassword)
		t.Run(name, func(t *testing.T) {
			reason, _ := json.Marshal("Login failed for " + redactUser + " with " + echo)
			jsonBody := `{"error":"not_authorized","reason":` + string(reason) + `}`
			msg := errorReason(strings.NewReader(jsonBody), "application/json", redactCred)
			checkNoLeak(t, msg, echo)
			if msg != reasonWithheld {
				t.Errorf("JSON: got %q, want %q", msg, reasonWithheld)
			}
			// The echo in the error member instead: the reason shown is withheld as well.
			errBody := `{"error":` + string(reason) + `}`
			if msg := errorReason(strings.NewReader(errBody), "application/json", redactCred); msg != reasonWithheld {
				t.Errorf("JSON error member: got %q", msg)
			}
			htmlBody := "<html><body><h1>401</h1><p>Bad credentials: " + echo + "</p></body></html>"
			msg = errorReason(strings.NewReader(htmlBody), "text/html; charset=utf-8", redactCred)
			checkNoLeak(t, msg, echo)
			if want := fmt.Sprintf("text/html body of %d bytes, not shown", len(htmlBody)); msg != want {
				t.Errorf("HTML: got %q, want %q", msg, want)
			}
		})
	}
}

// TestErrorReasonCutEcho: an echo cut at the read limit, at any byte of the password, shows no
// prefix of it: a cut body is never shown.
func TestErrorReasonCutEcho(t *testing.T) {
	for _, body := range []struct{ head, tail, what string }{
		{`{"error":"not_authorized","reason":"`, `"}`, "application/json"},
		{`<html><body><p>`, `</p></body></html>`, "text/html"},
	} {
		for cut := 1; cut < len(redactPassword); cut++ {
			pad := strings.Repeat("x", maxErrorBody-cut-len(body.head))
			full := body.head + pad + redactPassword + body.tail
			msg := errorReason(strings.NewReader(full), body.what, redactCred)
			checkNoLeak(t, msg, "")
			if want := body.what + " body of more than 4096 bytes, not shown"; msg != want {
				t.Fatalf("cut at %d: got %q, want %q", cut, msg, want)
			}
		}
	}
	// A body cut by a read error is a prefix too.
	prefix := `{"error":"x","reason":"Login failed with Pä&ss`
	r := io.MultiReader(strings.NewReader(prefix), iotest.ErrReader(errors.New("connection reset")))
	if msg, want := errorReason(r, "application/json", redactCred), fmt.Sprintf("application/json body cut short after %d bytes, not shown", len(prefix)); msg != want {
		t.Errorf("read error: got %q, want %q", msg, want)
	}
}

// TestErrorReasonPartialEcho: a reason that echoes a part of the password
// (cut short by the broker itself) is withheld too.
func TestErrorReasonPartialEcho(t *testing.T) {
	pw := "hunter2-very-secret-Xy9"
	cred := config.Credentials{Username: "u", Password: config.Secret(pw)}
	for i := 0; i+partEcho <= len(pw); i++ {
		for _, part := range []string{pw[:i+partEcho], pw[i:], pw[i : i+partEcho]} {
			body := `{"error":"not_authorized","reason":"bad password '` + part + `'"}`
			if got := errorReason(strings.NewReader(body), "application/json", cred); got != reasonWithheld {
				t.Fatalf("echo of %q: got %q", part, got)
			}
		}
	}
	if got := errorReason(strings.NewReader(`{"reason":"bad password 'hunter2'"}`), "", cred); got != "bad password 'hunter2'" {
		t.Fatalf("a part shorter than %d bytes is no echo: got %q", partEcho, got)
	}
}

func TestErrorReasonShows(t *testing.T) {
	for _, tc := range []struct {
		name, body, contentType string
		cred                    config.Credentials
		want                    string
	}{
		{"RabbitMQ reason", `{"error":"not_authorized","reason":"Not management user"}`, "application/json", redactCred, "Not management user"},
		{"reason naming the user", `{"error":"not_authorized","reason":"Login failed for user 'monitor'"}`, "application/json", redactCred, "Login failed for user 'monitor'"},
		{"error without reason", `{"error":"Object Not Found"}`, "application/json", redactCred, "Object Not Found"},
		{"Erlang term", `{"error":"Internal Server Error","reason":"{badarg,[{erlang,list_to_atom,[\"x\"],[]}]}"}`, "application/json", redactCred, `{badarg,[{erlang,list_to_atom,["x"],[]}]}`},
		{"JSON whatever the content type", `{"reason":"Login failed"}`, "text/plain", redactCred, "Login failed"},
		{"one line", `{"reason":"a\n\tb\u0000c\u202ed  "}`, "", redactCred, "a bcd"},
		{"long reason cut", `{"reason":"` + strings.Repeat("é", 150) + `"}`, "", redactCred, strings.Repeat("é", 100) + "…"},
		{"no password", `{"reason":"anything at all"}`, "", config.Credentials{Username: "guest"}, "anything at all"},
		{"empty body", ``, "text/html", redactCred, ""},
		{"HTML page", "<html><body>503 Service Unavailable</body></html>", "text/html", redactCred, "text/html body of 49 bytes, not shown"},
		{"plain text", "Service Unavailable", "", redactCred, "body of 19 bytes, not shown"},
		{"JSON not RabbitMQ's", `["Not management user"]`, "application/json", redactCred, "application/json body of 23 bytes, not shown"},
		{"JSON reason not a string", `{"reason":{"a":1}}`, "application/json", redactCred, "application/json body of 18 bytes, not shown"},
		{"bad content type", "x", "te xt/;;", redactCred, "body of 1 bytes, not shown"},
		{"content type echoing the password", "x", "text/x-" + url.QueryEscape("Core42"), config.Credentials{Username: "u", Password: "core42"}, "body of 1 bytes, not shown"},
		{"oversized JSON", `{"reason":"` + strings.Repeat("x", maxErrorBody) + `"}`, "application/json", redactCred, "application/json body of more than 4096 bytes, not shown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := errorReason(strings.NewReader(tc.body), tc.contentType, tc.cred); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestListQueuesRedactsEchoedCredentials goes through the HTTP request: what the server receives
// is what it echoes, in a few spellings.
func TestListQueuesRedactsEchoedCredentials(t *testing.T) {
	echoes := map[string]func(r *http.Request) (string, string){
		"JSON reason": func(r *http.Request) (string, string) {
			_, pw, _ := r.BasicAuth()
			reason, _ := json.Marshal("Login failed with " + pw)
			return "application/json", `{"error":"not_authorized","reason":` + string(reason) + `}`
		},
		"JSON reason with the Authorization header": func(r *http.Request) (string, string) {
			return "application/json", `{"error":"not_authorized","reason":"denied: ` + r.Header.Get("Authorization") + `"}`
		},
		"HTML page": func(r *http.Request) (string, string) {
			_, pw, _ := r.BasicAuth()
			return "text/html", "<p>bad password " + html.EscapeString(pw) + "</p>"
		},
	}
	for name, echo := range echoes {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ct, body := echo(r)
				w.Header().Set("Content-Type", ct)
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprint(w, body)
			}))
			defer srv.Close()
			u, _ := url.Parse(srv.URL)
			port, _ := strconv.Atoi(u.Port())
			c := &Client{HTTP: &http.Client{}}
			err := c.ListQueues(context.Background(), brokerhttp.Target{Scheme: "http", Hostname: "127.0.0.1", Port: port},
				redactCred, func(*Queue) error { return nil })
			if err == nil {
				t.Fatal("want an error")
			}
			msg := err.Error()
			checkNoLeak(t, msg, basicToken(redactUser, redactPassword))
			if !strings.HasPrefix(msg, "management API answered 401 Unauthorized") || !strings.Contains(msg, reasonWithheld) && !strings.Contains(msg, "not shown") {
				t.Errorf("message: %s", msg)
			}
		})
	}
}
