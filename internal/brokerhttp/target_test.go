package brokerhttp

import (
	"strings"
	"testing"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in       string
		base     string
		hostPort string
		hostname string
		err      string
	}{
		{in: "localhost", base: "http://localhost:15672", hostPort: "localhost:15672", hostname: "localhost"},
		{in: "rabbit.example:8080", base: "http://rabbit.example:8080", hostPort: "rabbit.example:8080", hostname: "rabbit.example"},
		{in: "http://rabbit", base: "http://rabbit:15672", hostPort: "rabbit:15672", hostname: "rabbit"},
		{in: "https://rabbit", base: "https://rabbit:15671", hostPort: "rabbit:15671", hostname: "rabbit"},
		{in: "HTTPS://Rabbit:443/", base: "https://rabbit:443", hostPort: "rabbit:443", hostname: "rabbit"},
		// Go's transport maps non-ASCII hosts through IDNA before dialling; the
		// allow-list must judge that same name.
		{in: "127\u30020\u30020\u30021:15672", base: "http://127.0.0.1:15672", hostPort: "127.0.0.1:15672", hostname: "127.0.0.1"},
		{in: "http://localhost\uff0e:1", base: "http://localhost.:1", hostPort: "localhost.:1", hostname: "localhost."},
		{in: "https://b\u00fccher.example", base: "https://xn--bcher-kva.example:15671", hostPort: "xn--bcher-kva.example:15671", hostname: "xn--bcher-kva.example"},
		{in: "\uff2c\uff2f\uff23\uff21\uff2c\uff28\uff2f\uff33\uff34", base: "http://localhost:15672", hostPort: "localhost:15672", hostname: "localhost"},
		{in: "https://proxy.example/rabbitmq/", base: "https://proxy.example:15671/rabbitmq", hostPort: "proxy.example:15671", hostname: "proxy.example"},
		{in: "http://proxy/a%20b/mgmt", base: "http://proxy:15672/a%20b/mgmt", hostPort: "proxy:15672", hostname: "proxy"},
		{in: "[::1]:15673", base: "http://[::1]:15673", hostPort: "[::1]:15673", hostname: "::1"},
		{in: "http://[::1]", base: "http://[::1]:15672", hostPort: "[::1]:15672", hostname: "::1"},
		{in: "127.0.0.1", base: "http://127.0.0.1:15672", hostPort: "127.0.0.1:15672", hostname: "127.0.0.1"},

		{in: "", err: "target is empty"},
		{in: "ftp://rabbit", err: `scheme "ftp" is not supported`},
		{in: "amqp://rabbit:5672", err: `scheme "amqp" is not supported`},
		{in: "http://user:pass@rabbit", err: "must not contain user information"},
		{in: "user@rabbit", err: "must not contain user information"},
		{in: "http://rabbit/?x=1", err: "must not contain a query"},
		{in: "http://rabbit/#frag", err: "must not contain a query or fragment"},
		{in: "rabbit:0", err: "not between 1 and 65535"},
		{in: "rabbit:99999", err: "not between 1 and 65535"},
		{in: "rabbit:port", err: "not a valid host"},
		{in: "rabbit:", err: "empty port"},
		{in: "http://", err: "has no host"},
		{in: "http:///path", err: "has no host"},
		{in: "rab bit", err: "white space"},
		{in: "rabbit\n", err: "white space"},
		{in: "http://rabbit/../admin", err: ". or .. segments"},
		{in: strings.Repeat("a", 3000), err: "longer than 2048"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseTarget(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseTarget(%q) error = %v, want one containing %q", tc.in, err, tc.err)
				}
				if strings.Contains(err.Error(), "pass") && strings.Contains(tc.in, "pass@") {
					t.Fatalf("error %q repeats the userinfo", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseTarget(%q): %v", tc.in, err)
			}
			if got.BaseURL() != tc.base || got.HostPort() != tc.hostPort || got.Hostname != tc.hostname {
				t.Fatalf("ParseTarget(%q) = base %q hostport %q hostname %q; want %q %q %q",
					tc.in, got.BaseURL(), got.HostPort(), got.Hostname, tc.base, tc.hostPort, tc.hostname)
			}
		})
	}
}
