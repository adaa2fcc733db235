package containertest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// These tests only read files: the documented commands are checked here by
// every `go test`, and run for real by cmd/rabbitmq_queue_exporter's
// TestContainerImage in the broker lane.

func TestShellWords(t *testing.T) {
	for line, want := range map[string][]string{
		`docker run -d --name x`:                        {"docker", "run", "-d", "--name", "x"},
		`-v "$PWD/a b:/run/x:ro"  -e 'K=$v w'`:          {"-v", "$PWD/a b:/run/x:ro", "-e", "K=$v w"},
		`a\ b "c\"d" e"f"g '' # comment`:                {"a b", `c"d`, "efg", ""},
		"\t-e\tRABBITMQ_HOST=https://rabbit.example:1 ": {"-e", "RABBITMQ_HOST=https://rabbit.example:1"},
	} {
		got, err := ShellWords(line)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ShellWords(%q) = %q, %v; want %q", line, got, err, want)
		}
	}
	if _, err := ShellWords(`a "b`); err == nil {
		t.Error("unterminated quote accepted")
	}
}

func TestParseRunRejectsUnknownFlags(t *testing.T) {
	for _, words := range [][]string{
		{"--network", "host", ImageName},
		{"-v", "/a:/b", ImageName},
		{"-e", "NOVALUE", ImageName},
		{"-d"},
	} {
		if _, err := parseRun(words); err == nil {
			t.Errorf("parseRun(%q) accepted", words)
		}
	}
}

func readRepoFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReadmeRunDocumented(t *testing.T) {
	s, err := ReadmeRun(string(readRepoFile(t, "README.md")))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckDocumented(); err != nil {
		t.Errorf("README.md's docker run: %v", err)
	}
	readme := string(readRepoFile(t, "README.md"))
	_, sec, _ := strings.Cut(readme, "\n### Docker\n")
	if !strings.Contains(sec, "make image") {
		t.Error("README.md's Docker section does not show `make image`")
	}
}

func TestComposeDocumented(t *testing.T) {
	c, err := ParseCompose(readRepoFile(t, "examples/compose/compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(); err != nil {
		t.Errorf("examples/compose/compose.yml: %v", err)
	}
}
