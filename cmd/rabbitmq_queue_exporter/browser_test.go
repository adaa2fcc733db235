package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/scrapetest"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/testbed"
)

const (
	chromiumPath     = "/usr/bin/chromium"
	chromedriverPath = "/usr/bin/chromedriver"
	// webElementKey is the W3C WebDriver key of an element reference.
	webElementKey = "element-6066-11e4-a52e-4f735466cecf"
)

// TestLandingPageInBrowser drives headless Chromium through chromedriver's W3C
// WebDriver protocol: it opens the landing page, fills in the probe form with
// a fake broker's address, submits it and reads the probe result, taking
// screenshots into test-output/browser/. A browser takes seconds to start:
// it runs in the full lane, so that the hermetic lane stays within a minute.
func TestLandingPageInBrowser(t *testing.T) {
	testbed.RequireFull(t, "a headless browser")
	for _, bin := range []string{chromiumPath, chromedriverPath} {
		if _, err := os.Stat(bin); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is missing (scripts/test-deps.sh installs chromium and chromium-driver): %v", bin, err)
			}
			t.Skipf("%s is missing; run scripts/test-deps.sh to install chromium and chromium-driver", bin)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	broker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/queues" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`[{"name":"browser-q","vhost":"/","messages":5,"messages_ready":4,"messages_unacknowledged":1}]`))
	}))
	t.Cleanup(broker.Close)
	brokerURL, err := url.Parse(broker.URL)
	if err != nil {
		t.Fatal(err)
	}
	p := startExporter(t, []string{"RABBITMQ_HOST=" + brokerURL.Host})

	wd := startWebDriver(ctx, t)
	outDir := filepath.Join(repoRoot(), "test-output", "browser")
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		t.Fatal(err)
	}

	// The landing page.
	wd.call(http.MethodPost, "/url", map[string]any{"url": p.url("/")}, nil)
	var title string
	wd.call(http.MethodGet, "/title", nil, &title)
	if title != "RabbitMQ Queue Exporter" {
		t.Errorf("title %q, want %q", title, "RabbitMQ Queue Exporter")
	}
	if h1 := wd.text(wd.find("h1")); h1 != "RabbitMQ Queue Exporter" {
		t.Errorf("heading %q, want %q", h1, "RabbitMQ Queue Exporter")
	}
	for _, sel := range []string{`a[href="/metrics"]`, `a[href^="/probe"]`} {
		if n := len(wd.findAll(sel)); n == 0 {
			t.Errorf("landing page has no link %s", sel)
		}
	}
	wd.screenshot(filepath.Join(outDir, "landing.png"))

	// Fill in and submit the probe form.
	target := wd.find(`form input[name="target"]`)
	wd.call(http.MethodPost, "/element/"+target+"/clear", map[string]any{}, nil)
	wd.call(http.MethodPost, "/element/"+target+"/value", map[string]any{"text": brokerURL.Host}, nil)
	var typed string
	wd.call(http.MethodGet, "/element/"+target+"/property/value", nil, &typed)
	if typed != brokerURL.Host {
		t.Fatalf("target input holds %q after typing, want %q", typed, brokerURL.Host)
	}
	wd.call(http.MethodPost, "/element/"+wd.find(`form input[type="submit"]`)+"/click", map[string]any{}, nil)

	var current string
	waitForCtx(ctx, t, "the browser to reach /probe", func() bool {
		wd.call(http.MethodGet, "/url", nil, &current)
		u, err := url.Parse(current)
		return err == nil && u.Path == "/probe"
	})
	u, _ := url.Parse(current)
	if got := u.Query().Get("target"); got != brokerURL.Host {
		t.Errorf("form submitted target=%q, want %q (URL %s)", got, brokerURL.Host, current)
	}
	var body string
	waitForCtx(ctx, t, "the probe result to render", func() bool {
		body = wd.text(wd.find("body"))
		return strings.Contains(body, "probe_success")
	})
	for _, want := range []string{
		`rabbitmq_individual_queue_messages_ready{host="127.0.0.1",name="browser-q",vhost="/"} 4`,
		"probe_success 1",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("probe page lacks %q:\n%s", want, body)
		}
	}
	wd.screenshot(filepath.Join(outDir, "probe-result.png"))
	if t.Failed() {
		t.Logf("exporter log:\n%s", p.logs)
	}
}

// webDriver is a minimal W3C WebDriver client for one session.
type webDriver struct {
	t       *testing.T
	ctx     context.Context
	base    string // http://127.0.0.1:port
	session string
	client  *http.Client
	logs    *scrapetest.LockedBuffer
}

// startWebDriver runs chromedriver on a free port, opens a headless Chromium
// session and registers cleanup that closes the session and kills chromedriver
// (with the browser it started).
func startWebDriver(ctx context.Context, t *testing.T) *webDriver {
	t.Helper()
	addr := freePort(t)
	port := addr[strings.LastIndex(addr, ":")+1:]
	wd := &webDriver{t: t, ctx: ctx, base: "http://" + addr, client: &http.Client{Timeout: 30 * time.Second}, logs: &scrapetest.LockedBuffer{}}

	cmd := exec.Command(chromedriverPath, "--port="+port, "--allowed-ips=127.0.0.1")
	cmd.Stdout = wd.logs
	cmd.Stderr = wd.logs
	// Its own process group, so cleanup ends the browser with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting chromedriver: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	// Not t.TempDir: its cleanup could run while Chromium still writes the
	// profile. This one is removed after the browser is gone, with retries.
	profile, err := os.MkdirTemp("", "rqe-chromium-profile-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if wd.session != "" {
			req, err := http.NewRequest(http.MethodDelete, wd.base+"/session/"+wd.session, nil)
			if err == nil {
				c := &http.Client{Timeout: 10 * time.Second}
				if resp, err := c.Do(req); err == nil {
					resp.Body.Close()
				}
			}
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("chromedriver did not exit")
		}
		for range 50 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("could not remove the browser profile %s", profile)
	})

	waitForCtx(ctx, t, "chromedriver to be ready", func() bool {
		select {
		case <-exited:
			t.Fatalf("chromedriver exited at start-up:\n%s", wd.logs)
		default:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, wd.base+"/status", nil)
		if err != nil {
			return false
		}
		resp, err := wd.client.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var st struct {
			Value struct {
				Ready bool `json:"ready"`
			} `json:"value"`
		}
		return json.NewDecoder(resp.Body).Decode(&st) == nil && st.Value.Ready
	})

	caps := map[string]any{
		"capabilities": map[string]any{
			"alwaysMatch": map[string]any{
				"browserName":      "chrome",
				"pageLoadStrategy": "normal",
				"goog:chromeOptions": map[string]any{
					"binary": chromiumPath,
					"args": []string{
						"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
						"--no-first-run", "--disable-background-networking",
						"--disable-component-update", "--disable-sync",
						"--user-data-dir=" + profile, "--window-size=1280,900",
					},
				},
			},
		},
	}
	var created struct {
		SessionID string `json:"sessionId"`
	}
	wd.do(http.MethodPost, "/session", caps, &created)
	if created.SessionID == "" {
		t.Fatalf("chromedriver returned no session id\n%s", wd.logs)
	}
	wd.session = created.SessionID
	return wd
}

// call sends a command to the session; out receives the response's "value".
func (wd *webDriver) call(method, path string, in, out any) {
	wd.t.Helper()
	wd.do(method, "/session/"+wd.session+path, in, out)
}

func (wd *webDriver) do(method, path string, in, out any) {
	wd.t.Helper()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			wd.t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(wd.ctx, method, wd.base+path, body)
	if err != nil {
		wd.t.Fatal(err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	resp, err := wd.client.Do(req)
	if err != nil {
		wd.t.Fatalf("WebDriver %s %s: %v\nchromedriver log:\n%s", method, path, err, wd.logs)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		wd.t.Fatalf("WebDriver %s %s: reading response: %v", method, path, err)
	}
	var envelope struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(raw, &envelope); err != nil {
		wd.t.Fatalf("WebDriver %s %s: status %d, undecodable response %q", method, path, resp.StatusCode, raw)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error   string `json:"error"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(envelope.Value, &e)
		wd.t.Fatalf("WebDriver %s %s: status %d: %s: %s", method, path, resp.StatusCode, e.Error, e.Message)
	}
	if out != nil {
		if err := json.Unmarshal(envelope.Value, out); err != nil {
			wd.t.Fatalf("WebDriver %s %s: decoding value %s: %v", method, path, envelope.Value, err)
		}
	}
}

// find returns the id of the first element matching a CSS selector.
func (wd *webDriver) find(selector string) string {
	wd.t.Helper()
	var el map[string]string
	wd.call(http.MethodPost, "/element", map[string]any{"using": "css selector", "value": selector}, &el)
	id := el[webElementKey]
	if id == "" {
		wd.t.Fatalf("no element reference for %s: %v", selector, el)
	}
	return id
}

func (wd *webDriver) findAll(selector string) []string {
	wd.t.Helper()
	var els []map[string]string
	wd.call(http.MethodPost, "/elements", map[string]any{"using": "css selector", "value": selector}, &els)
	ids := make([]string, 0, len(els))
	for _, el := range els {
		ids = append(ids, el[webElementKey])
	}
	return ids
}

func (wd *webDriver) text(element string) string {
	wd.t.Helper()
	var s string
	wd.call(http.MethodGet, "/element/"+element+"/text", nil, &s)
	return s
}

// screenshot saves the viewport as a PNG and checks that it decodes.
func (wd *webDriver) screenshot(path string) {
	wd.t.Helper()
	var b64 string
	wd.call(http.MethodGet, "/screenshot", nil, &b64)
	data, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		wd.t.Fatalf("screenshot is not base64: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		wd.t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() == 0 || b.Dy() == 0 {
		wd.t.Fatalf("screenshot %s is empty: %v", path, b)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		wd.t.Fatal(err)
	}
	// Read it back as a reader of the file would.
	f, err := os.Open(path)
	if err != nil {
		wd.t.Fatal(err)
	}
	defer f.Close()
	cfg, err := png.DecodeConfig(f)
	if err != nil || cfg.Width == 0 || cfg.Height == 0 {
		wd.t.Fatalf("saved %s does not decode as a non-empty PNG: %v %+v", path, err, cfg)
	}
	wd.t.Logf("screenshot %s (%dx%d)", path, cfg.Width, cfg.Height)
}

// waitForCtx polls cond every 100ms until it holds or ctx ends.
func waitForCtx(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
