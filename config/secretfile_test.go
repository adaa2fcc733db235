package config

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestReadSecretFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want, err string
	}{
		{name: "newline", path: writeFile(t, dir, "a", "from-file\n"), want: "from-file"},
		{name: "crlf", path: writeFile(t, dir, "b", "from-file\r\n"), want: "from-file"},
		{name: "missing", path: filepath.Join(dir, "nope"), err: "PW_FILE: cannot read"},
		{name: "empty", path: writeFile(t, dir, "c", "\n"), err: "PW_FILE: file " + `"` + filepath.Join(dir, "c") + `" is empty`},
		{name: "two lines", path: writeFile(t, dir, "d", "a\nb\n"), err: "more than one line"},
		{name: "NUL", path: writeFile(t, dir, "e", "a\x00b"), err: "NUL byte"},
		{name: "too large", path: writeFile(t, dir, "f", strings.Repeat("x", MaxSecretFileBytes+1)), err: "larger than 65536 bytes"},
		{name: "endless device", path: "/dev/zero", err: `PW_FILE: "/dev/zero" is not a regular file`},
		{name: "fifo without writer", path: fifo, err: "is not a regular file"},
		{name: "directory", path: dir, err: "is not a regular file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadSecretFile("PW_FILE", tc.path)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("= %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	const pw = "hunter2-very-secret"
	c := Credentials{Username: "monitor", Password: Secret(pw)}
	var logBuf strings.Builder
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("creds", "password", c.Password, "creds", c)
	y, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"%v": fmt.Sprintf("%v", c), "%+v": fmt.Sprintf("%+v", c), "%#v": fmt.Sprintf("%#v", c),
		"%s": c.Password.String(), "slog": logBuf.String(), "yaml": string(y), "json": strings.NewReplacer(`\u003c`, "<", `\u003e`, ">").Replace(string(j)),
	}
	for how, out := range outputs {
		if strings.Contains(out, pw) {
			t.Errorf("%s printed the secret: %s", how, out)
		}
		if !strings.Contains(out, "<secret>") {
			t.Errorf("%s does not show the placeholder: %s", how, out)
		}
	}
	if string(c.Password) != pw {
		t.Fatal("explicit conversion must yield the value")
	}
}

// TestModuleConfigPrintsNoSecret: the effective configuration on debug pages
// hides the password, an inline TLS key and proxy credentials.
func TestModuleConfigPrintsNoSecret(t *testing.T) {
	f, err := ParseFile([]byte(`
auth_modules:
  a:
    username: u
    password: pw-secret-1
    targets: ['.*']
    proxy_url: http://proxyuser:proxy-secret-2@proxy:3128
    tls_config:
      cert: "-----BEGIN CERTIFICATE-----"
      key: key-secret-3
`))
	if err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(f.AuthModules["a"])
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"pw-secret-1", "proxy-secret-2", "key-secret-3"} {
		if strings.Contains(string(out), s) {
			t.Errorf("printed configuration shows %s:\n%s", s, out)
		}
	}
	_ = os.Remove
}

// TestReadTLSFile: the reader the broker clients use for their TLS files
// at every read takes regular files up to 16 MiB, and refuses a larger one
// by its size, without reading it.
func TestReadTLSFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 40); err != nil { // sparse: reading it would take hours
		t.Skipf("no sparse 1 TiB file here: %v", err)
	}
	f.Close()
	pemFile := writeFile(t, dir, "ca.pem", "-----BEGIN CERTIFICATE-----\n")
	for _, tc := range []struct{ path, err string }{
		{pemFile, ""},
		{huge, "larger than 16777216 bytes"},
		{fifo, "is not a regular file"},
		{"/dev/zero", "is not a regular file"},
	} {
		b, err := ReadTLSFile(tc.path)
		if tc.err == "" && (err != nil || len(b) == 0) || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: %d bytes, %v; want error %q", tc.path, len(b), err, tc.err)
		}
	}
}
