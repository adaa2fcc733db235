package plugin

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/fakeapi"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
)

// fuzzLimits are small, so the fuzzer reaches them.
var fuzzLimits = Limits{MaxLineBytes: 4096, MaxHeldBytes: 256, MaxFamilies: 16}

// parseChecked runs Parse's steps and checks the parser stayed within its
// memory bounds whatever the input.
func parseChecked(t *testing.T, body []byte) (*recorder, Result, error) {
	r := newRecorder()
	p := newParser(r, nil, fuzzLimits, queue.Fields())
	defer p.release()
	err := p.run(bytes.NewReader(body))
	if err == nil {
		err = p.finish()
	}
	if len(p.buf) > max(readWindow, fuzzLimits.MaxLineBytes+1) || p.heldBytes > fuzzLimits.MaxHeldBytes ||
		len(p.seen) > fuzzLimits.MaxFamilies || len(p.heldData) > fuzzLimits.MaxHeldBytes {
		t.Fatalf("over the bounds: window %d, held %d, families %d", len(p.buf), p.heldBytes, len(p.seen))
	}
	if err != nil && !refused(err) {
		t.Fatalf("an error that is neither ErrAmbiguous nor ErrMalformed: %v", err)
	}
	if err != nil && strings.ContainsAny(err.Error(), "\n\r") {
		t.Fatalf("error on more than one line: %q", err)
	}
	return r, p.res, err
}

func addSeeds(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "*.prom"))
	for _, path := range paths {
		if b, err := os.ReadFile(path); err == nil && len(b) <= 4096 {
			f.Add(b)
		}
	}
	for _, style := range []fakeapi.PluginStyle{fakeapi.PluginRaw, fakeapi.PluginEscaped} {
		f.Add(fakeapi.RenderPlugin(style, queuesNamed(`v\\`, `a\"b`, "c\nd", `e",queue="f`), fakeapi.DefaultPluginInfo(style)))
		f.Add(fakeapi.RenderPlugin(style, queuesNamed("/", "x\"} 5\nrabbitmq_detailed_queue_messages{vhost=\"/\",queue=\"y"), fakeapi.PluginInfo{NoBuildInfo: true}))
		// Small answers Parse accepts, so that mutations reach the
		// references (the raw one only runs on accepted, small answers).
		for _, names := range [][]string{{`q "x"`, `b\s`}, {`x"} 5`, `\"`}, {"a", "b c"}} {
			for _, info := range []fakeapi.PluginInfo{fakeapi.DefaultPluginInfo(style), {NoBuildInfo: true}} {
				f.Add(withoutTelemetry(fakeapi.RenderPlugin(style, queuesNamed(`v"\`, names...), info)))
			}
		}
	}
}

// withoutTelemetry drops the blocks after rabbitmq_identity_info, which
// Parse does not need, to keep seeds small.
func withoutTelemetry(body []byte) []byte {
	if i := bytes.Index(body, []byte("# TYPE telemetry_")); i >= 0 {
		return append(body[:i:i], '\n')
	}
	return body
}

// FuzzParse: on any input Parse stays within its bounds and either refuses
// the answer or reads exactly what the references read: the escaped line
// reference (and expfmt where it accepts the text) in escaped mode, the
// brute-force enumeration of raw renderings in raw mode (which must find
// exactly one reading), both when the mode is unknown.
func FuzzParse(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		r, res, err := parseChecked(t, body)
		if err != nil {
			return
		}
		if res.Mode != ModeRaw {
			want, ok := escapedReference(body)
			if ok && !equalSamples(r.got, want) {
				t.Fatalf("mode %v: Parse read\n%s\nthe escaped reference reads\n%s", res.Mode, r, formatSamples(want))
			}
			if want, ok := expfmtReference(body); ok && !equalSamples(r.got, want) {
				t.Fatalf("mode %v: Parse read\n%s\nexpfmt reads\n%s", res.Mode, r, formatSamples(want))
			}
		}
		if res.Mode != ModeEscaped {
			readings, complete := rawReadings(body, 2)
			if !complete {
				return
			}
			if len(readings) != 1 || !equalSamples(readings[0], r.got) {
				t.Fatalf("mode %v: Parse read\n%s\nbut the raw renderer allows %d reading(s):\n%s", res.Mode, r, len(readings), describeReadings(readings))
			}
		}
	})
}

// FuzzNames renders honest answers for fuzzed names in every style: escaped
// answers must read exactly, raw ones exactly or not at all.
func FuzzNames(f *testing.F) {
	f.Add([]byte("plain\xff/\xffq \"x\"\xffv\\\xffa\",queue=\"b\xffn\nl"), uint8(0))
	f.Add([]byte("x\"} 5\nrabbitmq_detailed_queue_messages{vhost=\"/\",queue=\"victim\xff/\xffvictim"), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, flags uint8) {
		parts := bytes.Split(data, []byte{0xff})
		var queues []fakeapi.PluginQueue
		for i := 0; i+1 < len(parts) && len(queues) < 8; i += 2 {
			queues = append(queues, fakeapi.PluginQueue{Vhost: string(parts[i]), Name: string(parts[i+1]),
				Ready: int64(i), Unacked: int64(flags) * int64(i), Messages: int64(i) + int64(flags)*int64(i), Reductions: 7})
		}
		for _, style := range []fakeapi.PluginStyle{fakeapi.PluginRaw, fakeapi.PluginEscaped3, fakeapi.PluginEscaped} {
			info := fakeapi.DefaultPluginInfo(style)
			info.NoBuildInfo = flags&1 != 0
			body := fakeapi.RenderPlugin(style, queues, info)
			if flags&2 != 0 {
				if i := bytes.Index(body, []byte("# TYPE rabbitmq_build_info")); i >= 0 {
					body = moveBuildInfoFirst(t, body)
				}
			}
			r, res, err := parseChecked(t, body)
			want := truth(t, queues)
			if err != nil {
				// fuzzLimits are small: a long line or many held labels is refused.
				overLimit := strings.Contains(err.Error(), "longer than") || strings.Contains(err.Error(), "bytes before rabbitmq_build_info")
				sameKey := len(want) != 3*len(queues) // two queues with one name
				if style == fakeapi.PluginRaw || info.NoBuildInfo || overLimit || sameKey {
					continue
				}
				t.Fatalf("%s: an honest escaped answer refused: %v\n%s", style, err, body)
			}
			if !equalSamples(r.got, want) {
				t.Fatalf("%s (mode %v): read\n%s\nwant\n%s\nfrom\n%s", style, res.Mode, r, formatSamples(want), body)
			}
		}
	})
}
