package brokerhttp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	commoncfg "github.com/prometheus/common/config"
)

// Connection reuse limits of every module's client. Each idle connection costs
// a file descriptor and two goroutines; an exporter probing a thousand brokers
// through one module must not hold a thousand of them, so idle connections are
// capped in total and per broker and dropped well before the next scrape of a
// slow scrape interval would reuse them.
const (
	maxIdleConns = 32
	// MaxIdleConnsPerHost is the most idle connections kept to one broker.
	MaxIdleConnsPerHost = 2
	idleConnTimeout     = 30 * time.Second
	maxRedirects        = 3
)

// ClientConfig is what a broker client is built from: a module's HTTP
// settings and the exporter's user agent.
type ClientConfig struct {
	TLS       commoncfg.TLSConfig
	Proxy     commoncfg.ProxyConfig
	UserAgent string
	// ReadFile reads the CA, certificate and key files TLS names: once
	// here, then for every request and TLS handshake that needs them, so a
	// rotated file is used without a reload. Required when TLS names files:
	// the caller's reader bounds what one read may cost (prometheus/common's
	// own reads any file whole, and blocks on a FIFO).
	ReadFile func(path string) ([]byte, error)
}

// NewClient builds a module's client with prometheus/common's TLS and
// proxy handling (CA, certificate and key re-read when their files change).
// The transport is ours for three reasons: the connection limits above
// (common's allows 20000 idle connections for 5 minutes), a dialer that
// refuses any address but the one the allow-list approved for the request,
// and redirects only to the same origin. Credentials are added per request by
// the management client, never by the transport, so plugin requests carry none.
func NewClient(c ClientConfig) (*http.Client, error) {
	tlsFiles, opts, err := tlsFileRefs(c)
	if err != nil {
		return nil, err
	}
	tlsConfig, err := commoncfg.NewTLSConfig(&tlsFiles, opts...)
	if err != nil {
		return nil, err
	}
	proxy := c.Proxy.Proxy()
	proxyHeader := c.Proxy.GetProxyConnectHeader()
	newTransport := func(tc *tls.Config) (http.RoundTripper, error) {
		return &http.Transport{
			Proxy:               proxy,
			ProxyConnectHeader:  proxyHeader,
			DialContext:         guardedDial(proxy),
			TLSClientConfig:     tc,
			TLSHandshakeTimeout: 10 * time.Second,
			MaxIdleConns:        maxIdleConns,
			MaxIdleConnsPerHost: MaxIdleConnsPerHost,
			IdleConnTimeout:     idleConnTimeout,
			// Compression would trade broker CPU for bandwidth; the listing is
			// cheap to send uncompressed and we want to stay light on the broker.
			DisableCompression: true,
		}, nil
	}
	var rt http.RoundTripper
	if t := c.TLS; t.CAFile == "" && t.CertFile == "" && t.KeyFile == "" {
		rt, err = newTransport(tlsConfig)
	} else {
		rt, err = commoncfg.NewTLSRoundTripper(tlsConfig, commoncfg.TLSRoundTripperSettings{
			CA:   secretReader(t.CA, t.CAFile, c.ReadFile),
			Cert: secretReader(t.Cert, t.CertFile, c.ReadFile),
			Key:  secretReader(string(t.Key), t.KeyFile, c.ReadFile),
		}, newTransport)
	}
	if err != nil {
		return nil, err
	}
	if c.UserAgent != "" {
		rt = commoncfg.NewUserAgentRoundTripper(c.UserAgent, rt)
	}
	return &http.Client{Transport: approvedOnly{rt}, CheckRedirect: sameOrigin}, nil
}

func secretReader(inline, file string, read func(string) ([]byte, error)) commoncfg.SecretReader {
	switch {
	case file != "":
		return fileSecret{path: file, read: read}
	case inline != "":
		return commoncfg.NewInlineSecret(inline)
	}
	return nil
}

// tlsFileRefs returns c.TLS with its files named as secret refs, and the
// option that resolves them through c.ReadFile: prometheus/common reads
// *_file settings itself (the CA when the client is built, certificate and
// key at every handshake), refs through the secret manager it is given.
func tlsFileRefs(c ClientConfig) (commoncfg.TLSConfig, []commoncfg.TLSConfigOption, error) {
	t := c.TLS
	if t.CAFile == "" && t.CertFile == "" && t.KeyFile == "" {
		return t, nil, nil
	}
	if c.ReadFile == nil {
		return t, nil, errors.New("TLS files are named but no reader for them was given")
	}
	t.CARef, t.CAFile = t.CAFile, ""
	t.CertRef, t.CertFile = t.CertFile, ""
	t.KeyRef, t.KeyFile = t.KeyFile, ""
	return t, []commoncfg.TLSConfigOption{commoncfg.WithSecretManager(fileSecrets{read: c.ReadFile})}, nil
}

// fileSecrets resolves the refs tlsFileRefs made: each is a file's path.
type fileSecrets struct {
	read func(path string) ([]byte, error)
}

func (f fileSecrets) Fetch(_ context.Context, path string) (string, error) {
	b, err := f.read(path)
	return string(b), err
}

// fileSecret is one TLS file as the TLS round tripper re-reads it for every
// request, through the bounded reader.
type fileSecret struct {
	path string
	read func(path string) ([]byte, error)
}

func (f fileSecret) Fetch(context.Context) (string, error) {
	b, err := f.read(f.path)
	return string(b), err
}

func (f fileSecret) Description() string { return "file " + f.path }

// Immutable is false: the round tripper compares the file's content with
// what it has, and rebuilds its transport when it changed.
func (fileSecret) Immutable() bool { return false }

// sameOrigin follows a redirect only to the same scheme, host and port: any
// other would send the credentials somewhere the operator did not allow.
func sameOrigin(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	first := via[0].URL
	if req.URL.Scheme != first.Scheme || req.URL.Host != first.Host {
		return fmt.Errorf("refusing redirect to %s://%s: requests stay with the approved target", req.URL.Scheme, req.URL.Host)
	}
	return nil
}

type approvedKey struct{}

// WithApprovedTarget marks ctx's requests as approved for t, whose address
// an allow-list judged (or the operator configured). The client's dialer then
// connects to that host:port (or the module's proxy for it) only, so any
// difference between what was judged and what the transport dials (IDNA
// mapping, a redirect, a discovered member) fails closed.
func WithApprovedTarget(ctx context.Context, t Target) context.Context {
	return context.WithValue(ctx, approvedKey{}, t)
}

// approvedOnly refuses a request whose URL is not the approved target's
// address. The dialer checks new connections; this also covers a request that
// would reuse an idle connection opened for another approval.
type approvedOnly struct{ next http.RoundTripper }

func (a approvedOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	t, ok := req.Context().Value(approvedKey{}).(Target)
	if !ok {
		return nil, fmt.Errorf("refusing request to %s: no target was approved for it", req.URL.Host)
	}
	host, err := canonicalHost(req.URL.Hostname())
	port := req.URL.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[req.URL.Scheme]
	}
	if err != nil || req.URL.Scheme != t.Scheme || net.JoinHostPort(host, port) != t.HostPort() {
		return nil, fmt.Errorf("refusing request to %s://%s: the allow-list approved %s", req.URL.Scheme, req.URL.Host, t)
	}
	return a.next.RoundTrip(req)
}

func (a approvedOnly) CloseIdleConnections() {
	if c, ok := a.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func guardedDial(proxy func(*http.Request) (*url.URL, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		t, ok := ctx.Value(approvedKey{}).(Target)
		if !ok {
			return nil, fmt.Errorf("refusing to connect to %s: no target was approved for this request", addr)
		}
		if addr != t.HostPort() && addr != proxyAddr(proxy, t) {
			return nil, fmt.Errorf("refusing to connect to %s: the allow-list approved %s", addr, t.HostPort())
		}
		return dialer.DialContext(ctx, network, addr)
	}
}

// proxyAddr is the host:port the transport dials to reach t through the
// module's proxy, "" without one; default ports as net/http fills them in.
func proxyAddr(proxy func(*http.Request) (*url.URL, error), t Target) string {
	if proxy == nil {
		return ""
	}
	u, err := proxy(&http.Request{URL: &url.URL{Scheme: t.Scheme, Host: t.HostPort()}})
	if err != nil || u == nil {
		return ""
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443", "socks5": "1080", "socks5h": "1080"}[u.Scheme]
	}
	return net.JoinHostPort(u.Hostname(), port)
}
