package config

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestSettingResolve(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	value := func(s string) *string { return &s }
	tests := []struct {
		name    string
		setting Setting
		want    string
		err     string
	}{
		{name: "default", setting: Setting{Default: "guest"}, want: "guest"},
		{name: "value", setting: Setting{Value: value("s3cret"), Default: "guest"}, want: "s3cret"},
		{name: "explicit empty value", setting: Setting{Value: value(""), Default: "guest"}, want: ""},
		{name: "file with newline", setting: Setting{File: write("p1", "from-file\n")}, want: "from-file"},
		{name: "file with crlf", setting: Setting{File: write("p2", "from-file\r\n")}, want: "from-file"},
		{name: "both", setting: Setting{Name: "PW", FileName: "PW_FILE", Value: value("x"), File: write("p3", "y")}, err: "PW and PW_FILE are both set; set only one"},
		{name: "missing file", setting: Setting{FileName: "PW_FILE", File: filepath.Join(dir, "nope")}, err: "PW_FILE: cannot read"},
		{name: "empty file", setting: Setting{FileName: "PW_FILE", File: write("p4", "\n")}, err: "is empty"},
		{name: "two lines", setting: Setting{FileName: "PW_FILE", File: write("p5", "a\nb\n")}, err: "more than one line"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.setting.Resolve()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Fatalf("error spans lines: %q", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Resolve() = %q, %v; want %q", got, err, tc.want)
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
		"%s": fmt.Sprintf("%s", c.Password), "slog": logBuf.String(), "yaml": string(y), "json": strings.NewReplacer(`\u003c`, "<", `\u003e`, ">").Replace(string(j)),
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
