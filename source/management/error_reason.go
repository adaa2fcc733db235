package management

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"mime"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
)

// maxErrorBody bounds what is read of an error answer.
const maxErrorBody = 4096

// reasonWithheld replaces a reason that may echo the credentials.
const reasonWithheld = "(reason withheld: it may echo the credentials)"

// errorReason says, in one line safe to log and to show on the debug page, what an error answer
// holds. A broker or a proxy in front of it may echo the request's credentials in any spelling
// (raw, JSON- or HTML-escaped, percent-encoded, base64, cut short), so no body is shown
// verbatim:
//
//   - only RabbitMQ's own JSON error object ({"error":..,"reason":..}, complete and within
//     maxErrorBody) is shown, its "reason" (or "error" without one), and only when no decoding
//     of that text contains the credentials (see secrets.echoed);
//   - of any other body (an HTML proxy page, a body cut at maxErrorBody or by a read error), only
//     the media type and the size.
func errorReason(body io.Reader, contentType string, cred config.Credentials) string {
	b, err := io.ReadAll(io.LimitReader(body, maxErrorBody+1))
	secrets := secretForms(cred)
	what := "body"
	if mt, _, perr := mime.ParseMediaType(contentType); perr == nil && len(mt) <= 100 && !secrets.echoed(mt) {
		what = mt + " body"
	}
	switch {
	case len(b) > maxErrorBody:
		return fmt.Sprintf("%s of more than %d bytes, not shown", what, maxErrorBody)
	case err != nil:
		return fmt.Sprintf("%s cut short after %d bytes, not shown", what, len(b))
	case len(b) == 0:
		return ""
	}
	reason, ok := rabbitReason(b)
	if !ok {
		return fmt.Sprintf("%s of %d bytes, not shown", what, len(b))
	}
	line := oneLine(reason)
	if secrets.echoed(reason) || secrets.echoed(line) {
		return reasonWithheld
	}
	return line
}

// rabbitReason returns the text of RabbitMQ's JSON error object: its "reason", or its "error"
// when the reason is absent or empty.
func rabbitReason(b []byte) (string, bool) {
	var obj map[string]json.RawMessage
	if json.Unmarshal(b, &obj) != nil {
		return "", false
	}
	for _, key := range []string{"reason", "error"} {
		var s string
		if raw, ok := obj[key]; ok && json.Unmarshal(raw, &s) == nil && s != "" {
			return s, true
		}
	}
	return "", false
}

// oneLine makes s a short single line: control characters dropped, white space collapsed, cut
// after 200 bytes.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) && !unicode.IsSpace(r) || unicode.Is(unicode.Cf, r) {
			return -1
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	const maxLen = 200
	if len(s) > maxLen {
		cut := maxLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// secrets are the spellings of credentials to look for in what a broker says.
type secrets struct {
	folded []string // lower case, matched case-insensitively: the password and its hex form
	exact  []string // matched as is: pieces of base64 that only the password can produce
}

// partEcho is the shortest part of a password that counts as an echo of it.
const partEcho = 8

// secretForms lists what an error answer must not contain for cred. An empty password has no
// forms: the user name alone is no secret.
func secretForms(cred config.Credentials) secrets {
	pw := string(cred.Password)
	if pw == "" {
		return secrets{}
	}
	lower := strings.ToLower(pw)
	s := secrets{folded: []string{lower, hex.EncodeToString([]byte(pw))}}
	// An echo cut short (by the broker, or by a reason's own length limit)
	// shows a part of the password: every run of partEcho bytes of it counts.
	if len(lower) > partEcho {
		for i := 0; i+partEcho <= len(lower); i++ {
			s.folded = append(s.folded, lower[i:i+partEcho])
		}
	}
	// The Basic auth token is base64 of user:password; base64 of the password alone is the
	// other likely echo. Within longer base64 text the encoding of these bytes depends on their
	// offset modulo 3, so each alignment gets the part of its encoding that only they determine.
	for _, plain := range []string{pw, cred.Username + ":" + pw} {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			for lead := range 3 {
				e := enc.EncodeToString(append(make([]byte, lead), plain...))
				from, to := (8*lead+5)/6, 8*(lead+len(plain))/6
				if to > from {
					s.exact = append(s.exact, e[from:to])
				}
			}
		}
	}
	return s
}

// echoed reports whether text, or any text that decoding it yields, contains a secret. The
// decodings are those a broker or proxy might apply when echoing a request: HTML entities,
// percent-encoding (with or without '+' for space), backslash escapes of JSON and JavaScript,
// and base64; applied repeatedly, so that double encodings are seen through too.
func (s secrets) echoed(text string) bool {
	if len(s.folded) == 0 {
		return false
	}
	seen := map[string]bool{}
	todo := []string{text}
	// Each decoding shortens the text or leaves it unchanged; the bound only keeps a
	// pathological body from costing much.
	for len(todo) > 0 && len(seen) < 256 {
		t := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if seen[t] {
			continue
		}
		seen[t] = true
		if s.in(t) {
			return true
		}
		for _, decode := range decodings {
			for _, u := range decode(t) {
				if u != t && !seen[u] {
					todo = append(todo, u)
				}
			}
		}
	}
	return len(todo) > 0 // unfinished: assume the worst
}

func (s secrets) in(t string) bool {
	lower := strings.ToLower(t)
	for _, f := range s.folded {
		if strings.Contains(lower, f) {
			return true
		}
	}
	for _, e := range s.exact {
		if strings.Contains(t, e) {
			return true
		}
	}
	return false
}

var decodings = []func(string) []string{
	func(t string) []string { return []string{html.UnescapeString(t)} },
	func(t string) []string { return []string{percentDecode(t, false), percentDecode(t, true)} },
	func(t string) []string { return []string{backslashDecode(t)} },
	base64Runs,
}

// percentDecode decodes every valid %XX (either case), leaving anything else as is, unlike
// url.QueryUnescape, which gives up on the first malformed escape.
func percentDecode(t string, plus bool) string {
	if !strings.Contains(t, "%") && (!plus || !strings.Contains(t, "+")) {
		return t
	}
	var b strings.Builder
	for i := 0; i < len(t); i++ {
		switch c := t[i]; {
		case c == '%' && i+2 < len(t) && isHex(t[i+1]) && isHex(t[i+2]):
			v, _ := strconv.ParseUint(t[i+1:i+3], 16, 8)
			b.WriteByte(byte(v))
			i += 2
		case c == '+' && plus:
			b.WriteByte(' ')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// backslashDecode decodes the escapes of JSON and JavaScript strings (\uXXXX, \xXX, \n, \" ...)
// wherever they occur, leaving anything else as is.
func backslashDecode(t string) string {
	if !strings.Contains(t, `\`) {
		return t
	}
	var b strings.Builder
	for i := 0; i < len(t); i++ {
		c := t[i]
		if c != '\\' || i+1 == len(t) {
			b.WriteByte(c)
			continue
		}
		switch e := t[i+1]; {
		case e == 'u' && i+6 <= len(t) && isHex4(t[i+2:i+6]):
			v, _ := strconv.ParseUint(t[i+2:i+6], 16, 16)
			b.WriteRune(rune(v))
			i += 5
		case e == 'x' && i+4 <= len(t) && isHex(t[i+2]) && isHex(t[i+3]):
			v, _ := strconv.ParseUint(t[i+2:i+4], 16, 8)
			b.WriteByte(byte(v))
			i += 3
		default:
			switch e {
			case 'n':
				e = '\n'
			case 't':
				e = '\t'
			case 'r':
				e = '\r'
			case 'b':
				e = '\b'
			case 'f':
				e = '\f'
			}
			b.WriteByte(e)
			i++
		}
	}
	return b.String()
}

func isHex4(s string) bool {
	for i := range len(s) {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
}

// base64Runs decodes each run of base64 characters (either alphabet, padded or not) at least 4
// long, and joins what they decode to, so that encodings applied before base64 are seen through
// as well.
func base64Runs(t string) []string {
	var out []string
	isB64 := func(c byte) bool {
		return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '-' || c == '_'
	}
	for i := 0; i < len(t); {
		j := i
		for j < len(t) && isB64(t[j]) {
			j++
		}
		if j == i {
			i++
			continue
		}
		run := t[i:j]
		i = j
		if len(run)%4 == 1 {
			run = run[:len(run)-1] // not a whole encoding; the rest may still be
		}
		if len(run) < 4 {
			continue
		}
		run = strings.NewReplacer("-", "+", "_", "/").Replace(run)
		if dec, err := base64.RawStdEncoding.DecodeString(run); err == nil {
			out = append(out, string(bytes.ToValidUTF8(dec, []byte("\uFFFD"))))
		}
	}
	if len(out) == 0 {
		return nil
	}
	return []string{strings.Join(out, " ")}
}
