package scrapetest

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// Promtool checks an answer with `promtool check metrics`: it must decode
// by its headers (see Decode) and pass with no complaint (naming, HELP
// texts, types, duplicate families). promtool reads only the text format
// (2.42 and 3.x alike), where an OpenMetrics counter's sample X_total has no
// HELP or TYPE of its own; so an OpenMetrics answer, once the strict decoder
// accepted it, is checked as the text encoding of what it decoded to, and
// also as it is when every family is a gauge or untyped (then each of its
// lines reads the same in both formats). Under CI=true a missing promtool
// fails the test (scripts/test-deps.sh installs it).
func Promtool(t testing.TB, header http.Header, body []byte) {
	t.Helper()
	Check(t, header, body)
}

// Check is Parse and Promtool in one, decoding the answer once (expfmt's
// OpenMetrics decoder takes about 20 ms a line).
func Check(t testing.TB, header http.Header, body []byte) Samples {
	t.Helper()
	mfs, err := Decode(header, body)
	if err == nil {
		body, err = Plain(header, body)
	}
	if err != nil {
		t.Fatalf("%v\n%.2000s", err, body)
	}
	samples, err := Flatten(mfs)
	if err != nil {
		t.Fatal(err)
	}
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not installed (scripts/test-deps.sh installs it)")
		}
		t.Log("promtool not installed; skipping promtool check metrics")
		return samples
	}
	if expfmt.ResponseFormat(header).FormatType() != expfmt.TypeOpenMetrics {
		runPromtool(t, path, body)
		return samples
	}
	runPromtool(t, path, textOf(t, mfs))
	for _, mf := range mfs {
		if mf.GetType() != dto.MetricType_GAUGE && mf.GetType() != dto.MetricType_UNTYPED {
			return samples
		}
	}
	runPromtool(t, path, body)
	return samples
}

// PromtoolText checks a body in the text format 0.0.4 (see Promtool).
func PromtoolText(t testing.TB, body string) {
	t.Helper()
	Promtool(t, http.Header{"Content-Type": {TextContentType}}, []byte(body))
}

func textOf(t testing.TB, mfs []*dto.MetricFamily) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

func runPromtool(t testing.TB, path string, body []byte) {
	t.Helper()
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
