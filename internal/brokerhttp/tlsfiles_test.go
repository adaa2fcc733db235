package brokerhttp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	commoncfg "github.com/prometheus/common/config"
)

// spyReader reads files for a client and can be made to fail for a path.
type spyReader struct {
	mu     sync.Mutex
	reads  map[string]int
	refuse map[string]bool
}

var errRefused = errors.New("refused by the test's reader")

func (s *spyReader) read(path string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads[path]++
	if s.refuse[path] {
		return nil, errRefused
	}
	return os.ReadFile(path)
}

func (s *spyReader) count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads[path]
}

func (s *spyReader) setRefused(path string, refused bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse[path] = refused
}

// clientCert writes a self-signed client certificate and its key.
func clientCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "exporter"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, "client.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))),
		writeFile(t, dir, "client-key.pem", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})))
}

// TestTLSFilesThroughReader (issue 16, item 5): the CA, certificate and
// key files are read through the caller's reader when the client is built
// and again for requests and handshakes, never by prometheus/common's own
// unbounded reads; a file the reader refuses fails the request with the
// reader's error, and the client recovers once the reader accepts it again.
func TestTLSFilesThroughReader(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "no client certificate", http.StatusForbidden)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	srv.StartTLS()
	defer srv.Close()
	srv.Config.SetKeepAlivesEnabled(false) // every request a new handshake
	dir := t.TempDir()
	ca := writeFile(t, dir, "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
	cert, key := clientCert(t, dir)
	spy := &spyReader{reads: map[string]int{}, refuse: map[string]bool{}}
	m := testClient(t, ClientConfig{TLS: commoncfg.TLSConfig{CAFile: ca, CertFile: cert, KeyFile: key}, ReadFile: spy.read})
	target := serverTarget(t, srv)
	for _, f := range []string{ca, cert, key} {
		if spy.count(f) == 0 {
			t.Errorf("building the client did not read %s through the reader", f)
		}
	}
	for _, f := range []string{"", ca, cert, key} {
		before := map[string]int{ca: spy.count(ca), cert: spy.count(cert), key: spy.count(key)}
		spy.setRefused(f, true)
		body, err := get(t, m, target, srv.URL+"/x")
		spy.setRefused(f, false)
		if f == "" {
			if err != nil || body != "ok" {
				t.Fatalf("request: %q, %v", body, err)
			}
			for p, n := range before {
				if spy.count(p) == n {
					t.Errorf("a request with a new connection did not read %s again", p)
				}
			}
			continue
		}
		if !errors.Is(err, errRefused) && (err == nil || !strings.Contains(err.Error(), errRefused.Error())) {
			t.Errorf("%s refused by the reader: request gave %q, %v", f, body, err)
		}
		if body, err := get(t, m, target, srv.URL+"/x"); err != nil || body != "ok" {
			t.Errorf("%s readable again: %q, %v", f, body, err)
		}
	}
	// A client whose TLS names files must be given a reader.
	if _, err := NewClient(ClientConfig{TLS: commoncfg.TLSConfig{CAFile: ca}}); err == nil {
		t.Error("a client naming a CA file was built without a reader")
	}
}
