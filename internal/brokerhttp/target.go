// Package brokerhttp is how the exporter talks to brokers: a parsed Target
// (the address an allow-list judges) and an HTTP client that connects only
// to the address approved for each request.
package brokerhttp

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Default management API ports, as RabbitMQ ships them.
const (
	DefaultHTTPPort  = 15672
	DefaultHTTPSPort = 15671
	maxTargetLength  = 2048
)

// Target is a parsed broker address: where the management API lives.
type Target struct {
	Scheme     string // "http" or "https"
	Hostname   string // without brackets for IPv6
	Port       int
	PathPrefix string // "" or "/prefix" without a trailing slash
}

// ParseTarget accepts `host`, `host:port` or `http(s)://host[:port][/path-prefix]`.
// Userinfo is rejected rather than used: credentials come only from the operator's
// configuration, never from whoever can reach /probe.
func ParseTarget(s string) (Target, error) {
	if s == "" {
		return Target{}, errors.New("target is empty")
	}
	if len(s) > maxTargetLength {
		return Target{}, fmt.Errorf("target is longer than %d bytes", maxTargetLength)
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return Target{}, errors.New("target contains white space or control characters")
		}
	}
	raw := s
	if !strings.Contains(s, "://") {
		raw = "http://" + s
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Target{}, fmt.Errorf("target %q is not a valid host, host:port or URL", s)
	}
	t := Target{Scheme: strings.ToLower(u.Scheme)}
	switch t.Scheme {
	case "http":
		t.Port = DefaultHTTPPort
	case "https":
		t.Port = DefaultHTTPSPort
	default:
		return Target{}, fmt.Errorf("target scheme %q is not supported (use http or https)", u.Scheme)
	}
	if u.User != nil {
		return Target{}, errors.New("target must not contain user information; configure credentials instead")
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return Target{}, errors.New("target must not contain a query or fragment")
	}
	if u.Opaque != "" {
		return Target{}, fmt.Errorf("target %q is not a valid host, host:port or URL", s)
	}
	t.Hostname = u.Hostname()
	if t.Hostname == "" {
		return Target{}, fmt.Errorf("target %q has no host", s)
	}
	if t.Hostname, err = canonicalHost(t.Hostname); err != nil {
		return Target{}, err
	}
	if p := u.Port(); p != "" {
		port, err := strconv.Atoi(p)
		if err != nil || port < 1 || port > 65535 {
			return Target{}, fmt.Errorf("target port %q is not between 1 and 65535", p)
		}
		t.Port = port
	} else if strings.HasSuffix(u.Host, ":") {
		return Target{}, errors.New("target has an empty port")
	}
	// Checked again after url.Parse unescaped the host: "%C2%80" is a control character.
	if strings.ContainsAny(t.Hostname, "/\\@%") || !utf8.ValidString(t.Hostname) || strings.IndexFunc(t.Hostname, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r)
	}) >= 0 {
		return Target{}, fmt.Errorf("target host %q is not valid", t.Hostname)
	}
	t.PathPrefix = strings.TrimRight(u.EscapedPath(), "/")
	if strings.Contains(t.PathPrefix, "/../") || strings.HasSuffix(t.PathPrefix, "/..") || strings.Contains(t.PathPrefix, "/./") {
		return Target{}, errors.New("target path prefix must not contain . or .. segments")
	}
	// Escaping can triple a raw path; the canonical form must parse back.
	if len(t.BaseURL()) > maxTargetLength {
		return Target{}, fmt.Errorf("target is longer than %d bytes once escaped", maxTargetLength)
	}
	return t, nil
}

// canonicalHost returns host as the HTTP transport will dial it, so that
// allow-lists judge the address that is actually dialled: Go maps a
// non-ASCII host through IDNA (U+3002 "。" becomes "."), so the same
// mapping is applied here first; ASCII is lower-cased (DNS ignores case, and
// allow-list patterns are written in lower case).
func canonicalHost(host string) (string, error) {
	ascii := true
	for i := 0; i < len(host); i++ {
		if host[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if !ascii {
		mapped, err := idna.Lookup.ToASCII(host)
		if err != nil {
			return "", fmt.Errorf("target host %q is not a valid international domain name", host)
		}
		host = mapped
	}
	return strings.ToLower(host), nil
}

// HostPort is the target's `host:port` with the default port filled in; this is
// what allow-lists match against.
func (t Target) HostPort() string {
	return net.JoinHostPort(t.Hostname, strconv.Itoa(t.Port))
}

// BaseURL is the management API root (scheme, host, port, prefix), without a trailing slash.
func (t Target) BaseURL() string {
	return t.Scheme + "://" + t.HostPort() + t.PathPrefix
}

// String is the canonical form used in logs and cache keys.
func (t Target) String() string { return t.BaseURL() }
