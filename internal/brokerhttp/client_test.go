package brokerhttp

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	commoncfg "github.com/prometheus/common/config"
)

func testClient(t *testing.T, c ClientConfig) *http.Client {
	t.Helper()
	c.UserAgent = "test-agent"
	if c.ReadFile == nil {
		c.ReadFile = os.ReadFile
	}
	client, err := NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

func mustTarget(t *testing.T, s string) Target {
	t.Helper()
	tgt, err := ParseTarget(s)
	if err != nil {
		t.Fatal(err)
	}
	return tgt
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func get(t *testing.T, m *http.Client, approved Target, rawURL string) (string, error) {
	t.Helper()
	ctx := context.Background()
	if approved != (Target{}) {
		ctx = WithApprovedTarget(ctx, approved)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := m.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func serverTarget(t *testing.T, s *httptest.Server) Target {
	t.Helper()
	return mustTarget(t, s.URL)
}

// TestDialGuard: the client connects only to the address the allow-list
// judged for the request.
func TestDialGuard(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok "+r.UserAgent())
	}))
	defer srv.Close()
	m := testClient(t, ClientConfig{})
	target := serverTarget(t, srv)

	if body, err := get(t, m, target, srv.URL+"/x"); err != nil || body != "ok test-agent" {
		t.Fatalf("approved request: %q, %v", body, err)
	}
	if _, err := get(t, m, Target{}, srv.URL+"/x"); err == nil || !strings.Contains(err.Error(), "no target was approved") {
		t.Fatalf("unapproved request: %v", err)
	}
	other := target
	other.Port++
	if _, err := get(t, m, other, srv.URL+"/x"); err == nil || !strings.Contains(err.Error(), "the allow-list approved "+other.String()) {
		t.Fatalf("request to another address than approved (an idle connection exists): %v", err)
	}
	other.Scheme = "https"
	if _, err := get(t, m, other, srv.URL+"/x"); err == nil || !strings.Contains(err.Error(), "the allow-list approved") {
		t.Fatalf("request with another scheme than approved: %v", err)
	}
	// The dialer judges the address actually dialled, whatever the URL said.
	dial := guardedDial(nil)
	if _, err := dial(WithApprovedTarget(context.Background(), target), "tcp", "127.0.0.2:"+strings.Split(target.HostPort(), ":")[1]); err == nil || !strings.Contains(err.Error(), "refusing to connect") {
		t.Fatalf("dial of an unapproved address: %v", err)
	}
	// A host spelt with ideographic full stops is dialled as 127.0.0.1 by
	// net/http; ParseTarget gives the same name, so judge and dial agree.
	idn := mustTarget(t, "127\u30020\u30020\u30021:"+srv.URL[strings.LastIndexByte(srv.URL, ':')+1:])
	if body, err := get(t, m, idn, idn.BaseURL()+"/x"); err != nil || !strings.HasPrefix(body, "ok") {
		t.Fatalf("IDNA target: %q, %v", body, err)
	}
}

func TestRedirectsStayWithTheOrigin(t *testing.T) {
	var otherHits atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { otherHits.Add(1) }))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/same":
			http.Redirect(w, r, "/final", http.StatusFound)
		case "/away":
			http.Redirect(w, r, other.URL+"/final", http.StatusFound)
		case "/final":
			_, _ = io.WriteString(w, "final")
		}
	}))
	defer srv.Close()
	m := testClient(t, ClientConfig{})
	if body, err := get(t, m, serverTarget(t, srv), srv.URL+"/same"); err != nil || body != "final" {
		t.Fatalf("same-origin redirect: %q %v", body, err)
	}
	if _, err := get(t, m, serverTarget(t, srv), srv.URL+"/away"); err == nil || !strings.Contains(err.Error(), "refusing redirect") {
		t.Fatalf("cross-origin redirect: %v", err)
	}
	if otherHits.Load() != 0 {
		t.Fatal("the other server was contacted")
	}
}

// TestProxy: proxy_url sends requests through a real forwarding proxy; the
// dial guard lets the proxy's address through.
func TestProxy(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "origin") }))
	defer srv.Close()
	var proxied atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !r.URL.IsAbs() {
			http.Error(w, "not a proxy request", http.StatusBadRequest)
			return
		}
		proxied.Add(1)
		out, err := http.NewRequest(r.Method, r.URL.String(), nil)
		if err != nil {
			t.Error(err)
			return
		}
		resp, err := http.DefaultTransport.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	defer proxy.Close()
	pu, _ := url.Parse(proxy.URL)
	m := testClient(t, ClientConfig{Proxy: commoncfg.ProxyConfig{ProxyURL: commoncfg.URL{URL: pu}}})
	if body, err := get(t, m, serverTarget(t, srv), srv.URL+"/x"); err != nil || body != "origin" {
		t.Fatalf("through the proxy: %q, %v", body, err)
	}
	if proxied.Load() != 1 {
		t.Fatalf("proxy saw %d requests, want 1", proxied.Load())
	}
}

func TestTLSSettings(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "tls") }))
	srv.TLS = &tls.Config{MaxVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()
	ca := writeFile(t, t.TempDir(), "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
	target := serverTarget(t, srv)
	for _, tc := range []struct {
		name string
		tls  commoncfg.TLSConfig
		err  string
	}{
		{name: "ca_file", tls: commoncfg.TLSConfig{CAFile: ca}},
		{name: "inline ca", tls: commoncfg.TLSConfig{CA: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))}},
		{name: "system roots", err: "certificate"},
		{name: "min_version above the server's", tls: commoncfg.TLSConfig{CAFile: ca, MinVersion: commoncfg.TLSVersion(tls.VersionTLS13)}, err: "protocol version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := testClient(t, ClientConfig{TLS: tc.tls})
			body, err := get(t, m, target, srv.URL+"/x")
			if tc.err == "" && (err != nil || body != "tls") || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("= %q, %v; want error %q", body, err, tc.err)
			}
		})
	}
}
