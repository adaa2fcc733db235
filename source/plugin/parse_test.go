package plugin

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/internal/fakeapi"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queueset"
)

// pluginField maps fakeapi's family order (ready, unacked, messages) to
// queue field numbers, through the table as Parse does.
func pluginField(t testing.TB, family string) int {
	for i, f := range queue.Fields() {
		if f.Plugin == family {
			return i
		}
	}
	t.Fatalf("family %s is not in queue.Fields", family)
	return -1
}

// truth is what an honest answer for queues holds; of two queues with the
// same names the first counts, as sinks keep the first value.
func truth(t testing.TB, queues []fakeapi.PluginQueue) map[sample]int64 {
	want := map[sample]int64{}
	for _, q := range queues {
		for fi, f := range fakeapi.PluginFamilies[:3] {
			k := sample{pluginField(t, f.Name), q.Vhost, q.Name}
			if _, dup := want[k]; !dup {
				want[k] = [...]int64{q.Ready, q.Unacked, q.Messages}[fi]
			}
		}
	}
	return want
}

func parseRecorded(body []byte, lim Limits) (*recorder, Result, error) {
	r := newRecorder()
	res, err := Parse(bytes.NewReader(body), r, nil, lim)
	return r, res, err
}

func queuesNamed(vhost string, names ...string) []fakeapi.PluginQueue {
	var qs []fakeapi.PluginQueue
	for i, n := range names {
		qs = append(qs, fakeapi.PluginQueue{Vhost: vhost, Name: n, Ready: int64(i), Unacked: int64(10 * i), Messages: int64(11 * i), Reductions: int64(1000 + i)})
	}
	return qs
}

// TestOddNames renders answers as each style would and checks Parse reads
// them exactly, or refuses them where the raw style is ambiguous.
func TestOddNames(t *testing.T) {
	type outcome int
	const (
		exact     outcome = iota // read exactly in every style
		rawRefuse                // raw answers must be refused as ambiguous
	)
	cases := []struct {
		vhost, name string
		raw         outcome
	}{
		{"/", "plain", exact},
		{"/", "", exact},
		{"", "empty vhost", exact},
		{"/", `q "double" quotes`, exact},
		{"/", `back\slash`, exact},
		{"/", `\n as text`, exact},
		{"/", `\"looks escaped\"`, exact},
		{"/", `ends with a backslash\`, exact},
		{"/", `\`, exact},
		{"/", `"`, exact},
		{"/", `x"} 5 closes early`, exact},
		{"/", `x"} `, exact},
		{"/", "trailing space ", exact},
		{"/", "tab\there", exact},
		{"/", "cr\rhere", exact},
		{"/", "ünïcødé ☃", exact},
		{"/", "bad\xffutf8\xc3", exact},
		{"/", "nul\x00byte", exact},
		{"/", `rabbitmq_detailed_queue_messages{vhost="/`, exact},
		{"/", `# TYPE x gauge`, exact},
		{`v "odd" \`, `back\slash "and" quotes`, exact},
		{"/", `a",queue="b`, rawRefuse},
		{`a",queue="b`, "c", rawRefuse},
		{"/", `",queue="`, rawRefuse},
		{"/", "new\nline", rawRefuse},
		{"/", "ends with a line feed\n", rawRefuse},
		{"new\nline vhost", "q", rawRefuse},
		{"/", "x\"} 5\nrabbitmq_detailed_queue_messages{vhost=\"/\",queue=\"victim", rawRefuse},
	}
	for _, style := range []fakeapi.PluginStyle{fakeapi.PluginRaw, fakeapi.PluginEscaped3, fakeapi.PluginEscaped} {
		for _, c := range cases {
			// Each odd queue among ordinary ones, so a forged line has neighbours.
			queues := append(queuesNamed(c.vhost, "before", c.name), queuesNamed("/", "after", "victim")...)
			body := fakeapi.RenderPlugin(style, queues, fakeapi.DefaultPluginInfo(style))
			r, res, err := parseRecorded(body, Limits{})
			if style == fakeapi.PluginRaw && c.raw == rawRefuse {
				if !errors.Is(err, ErrAmbiguous) {
					t.Errorf("%s %q %q: err %v, want ErrAmbiguous; read\n%s", style, c.vhost, c.name, err, r)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s %q %q: %v", style, c.vhost, c.name, err)
				continue
			}
			if want := truth(t, queues); !equalSamples(r.got, want) {
				t.Errorf("%s %q %q: read\n%s\nwant\n%s", style, c.vhost, c.name, r, formatSamples(want))
			}
			wantMode := ModeEscaped
			if style == fakeapi.PluginRaw {
				wantMode = ModeRaw
			}
			if res.Mode != wantMode || res.Queues != len(queues) || res.Samples != 3*len(queues) {
				t.Errorf("%s %q %q: result %+v", style, c.vhost, c.name, res)
			}
		}
	}
}

// refused tells whether err means the answer must not be used.
func refused(err error) bool { return errors.Is(err, ErrAmbiguous) || errors.Is(err, ErrMalformed) }

// TestRawForgeries hand-writes raw answers in which a queue name forges
// lines, and checks each is refused. Every one reads "well" line by line.
func TestRawForgeries(t *testing.T) {
	const (
		ready    = "rabbitmq_detailed_queue_messages_ready"
		unacked  = "rabbitmq_detailed_queue_messages_unacked"
		messages = "rabbitmq_detailed_queue_messages"
		red      = "rabbitmq_detailed_queue_process_reductions_total"
	)
	forged := func(name string) string {
		queues := queuesNamed("/", "a", name, "z")
		return string(fakeapi.RenderPlugin(fakeapi.PluginRaw, queues, fakeapi.DefaultPluginInfo(fakeapi.PluginRaw)))
	}
	cases := map[string]string{
		"sample of another family": forged("x\"} 5\n" + messages + "{vhost=\"/\",queue=\"victim"),
		"sample of each family": forged("x\"} 5\n" + ready + "{vhost=\"/\",queue=\"v\"} 1\n" + unacked + "{vhost=\"/\",queue=\"v\"} 1\n" +
			messages + "{vhost=\"/\",queue=\"v\"} 1\n" + red + "{vhost=\"/\",queue=\"v"),
		"comment line":       forged("x\"} 5\n# just a comment"),
		"empty line":         forged("x\"} 5\n\nmore"),
		"forged block":       forged("x\"} 5\n# TYPE forged gauge\n# HELP forged h\nforged{vhost=\"/\",queue=\"y"),
		"forged our block":   forged("x\"} 5\n# TYPE " + messages + " gauge\n# HELP " + messages + " h\n" + messages + "{vhost=\"/\",queue=\"y"),
		"forged build_info":  forged("x\"} 5\n# TYPE rabbitmq_build_info untyped\n# HELP rabbitmq_build_info h\nrabbitmq_build_info{rabbitmq_version=\"4.2.0\"} 1\nrabbitmq_build_info{x=\"y"),
		"help without type":  forged("x\"} 5\n# HELP " + ready + " h"),
		"forged final empty": forged("x\"} 5\n\n"),
		"ends the body":      forged("x\"} 5\n\n# TYPE y gauge"),
	}
	// A name can also forge the line that ends the block, with a victim
	// listed twice in one family.
	cases["victim twice"] = strings.ReplaceAll(forged("x"), `queue="x"} `, `queue="a"} `)
	for what, body := range cases {
		r, _, err := parseRecorded([]byte(body), Limits{})
		if !refused(err) {
			t.Errorf("%s: err %v, want ErrAmbiguous or ErrMalformed; read\n%s\nfrom\n%s", what, err, r, body)
		}
	}
}

// TestStructure covers answers that are not what the plugin writes.
func TestStructure(t *testing.T) {
	honest := string(fakeapi.RenderPlugin(fakeapi.PluginRaw, queuesNamed("/", "a", "b"), fakeapi.DefaultPluginInfo(fakeapi.PluginRaw)))
	const ready = "rabbitmq_detailed_queue_messages_ready"
	cases := []struct {
		what, body string
		want       error
	}{
		{"empty body", "", ErrMalformed},
		{"only the final line", "\n", ErrMalformed},
		{"truncated at a line end", strings.TrimSuffix(honest, "\n"), ErrMalformed},
		{"truncated within a line", honest[:len(honest)/2], ErrMalformed},
		{"text after the end", honest + "x\n", ErrMalformed},
		{"sample first", ready + `{vhost="/",queue="a"} 1` + "\n" + honest, ErrMalformed},
		{"a family missing", strings.Replace(honest, "# TYPE "+ready, "# TYPE other", 1), ErrAmbiguous},
		{"not a count", strings.Replace(honest, `queue="a"} 0`, `queue="a"} 1.5`, 1), ErrAmbiguous},
		{"negative", strings.Replace(honest, `queue="a"} 0`, `queue="a"} -1`, 1), ErrAmbiguous},
		{"NaN", strings.Replace(honest, `queue="a"} 0`, `queue="a"} NaN`, 1), ErrAmbiguous},
		{"overflow", strings.Replace(honest, `queue="a"} 0`, `queue="a"} 9223372036854775808`, 1), ErrAmbiguous},
		{"leading zero", strings.Replace(honest, `queue="a"} 0`, `queue="a"} 01`, 1), ErrAmbiguous},
		{"queue before vhost", strings.Replace(honest, `{vhost="/",queue="a"} 0`, `{queue="a",vhost="/"} 0`, 1), ErrAmbiguous},
		{"no queue label", strings.Replace(honest, `{vhost="/",queue="a"} 0`, `{vhost="/"} 0`, 1), ErrAmbiguous},
		{"two spaces", strings.Replace(honest, `queue="a"} 0`, `queue="a"}  0`, 1), ErrAmbiguous},
		{"timestamp", strings.Replace(honest, `queue="a"} 0`, `queue="a"} 0 123`, 1), ErrAmbiguous},
		{"type without help", strings.Replace(honest, "# HELP "+ready+" ", "# HELP other ", 1), ErrAmbiguous},
		{"unknown type", strings.Replace(honest, "summary", "sketch", 1), ErrMalformed},
		{"our family as summary", strings.Replace(honest, ready+" gauge", ready+" summary", 1), ErrMalformed},
		{"two build_info samples", strings.Replace(honest, "erlang_version=\"25.2.3\"} 1\n", "erlang_version=\"25.2.3\"} 1\nrabbitmq_build_info{rabbitmq_version=\"4.2.0\"} 1\n", 1), ErrAmbiguous},
		{"unreadable build_info", strings.Replace(honest, `rabbitmq_version="3.10.8"`, `rabbitmq_version="3.10.8`, 1), ErrAmbiguous},
		{"family count differs", strings.Replace(honest, "rabbitmq_detailed_queue_messages_unacked{vhost=\"/\",queue=\"a\"} 0\n", "", 1), ErrAmbiguous},
		{"family lists another queue", strings.Replace(honest, "rabbitmq_detailed_queue_messages_unacked{vhost=\"/\",queue=\"a\"}", "rabbitmq_detailed_queue_messages_unacked{vhost=\"/\",queue=\"c\"}", 1), ErrAmbiguous},
	}
	for _, c := range cases {
		r, _, err := parseRecorded([]byte(c.body), Limits{})
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v; read\n%s", c.what, err, c.want, r)
		}
	}
	if _, _, err := parseRecorded([]byte(honest), Limits{}); err != nil {
		t.Fatalf("the honest answer: %v", err)
	}
}

// TestModeFromBuildInfo checks the reading of labels whose meaning depends
// on the version, wherever build_info comes.
func TestModeFromBuildInfo(t *testing.T) {
	// Every label here reads both ways, differently: only the version tells.
	queues := queuesNamed(`v\\x`, `back\\slash`, `\"q\"`, `\n`)
	raw := fakeapi.RenderPlugin(fakeapi.PluginRaw, queues, fakeapi.DefaultPluginInfo(fakeapi.PluginRaw))
	esc := fakeapi.RenderPlugin(fakeapi.PluginEscaped, queues, fakeapi.DefaultPluginInfo(fakeapi.PluginEscaped))
	noBuild := fakeapi.PluginInfo{Node: "n", Cluster: "c", NoBuildInfo: true}

	// The same raw text under each version: build_info decides the reading.
	unescaped := queuesNamed(`v\x`, `back\slash`, `"q"`, "\n")
	for version, want := range map[string][]fakeapi.PluginQueue{"3.10.8": queues, "3.12.10": queues, "3.12.11": unescaped, "4.0.5": unescaped} {
		info := fakeapi.DefaultPluginInfo(fakeapi.PluginRaw)
		info.RabbitMQVersion = version
		body := fakeapi.RenderPlugin(fakeapi.PluginRaw, queues, info)
		r, res, err := parseRecorded(body, Limits{})
		if err != nil || !equalSamples(r.got, truth(t, want)) || res.Held != 9 {
			t.Errorf("%s: %v %+v\n%s\nwant\n%s", version, err, res, r, formatSamples(truth(t, want)))
		}
	}

	// Build_info first: nothing waits.
	moved := moveBuildInfoFirst(t, raw)
	if r, res, err := parseRecorded(moved, Limits{}); err != nil || res.Mode != ModeRaw || res.Held != 0 || !equalSamples(r.got, truth(t, queues)) {
		t.Errorf("build_info first: %v %+v\n%s", err, res, r)
	}
	if r, res, err := parseRecorded(esc, Limits{}); err != nil || res.Mode != ModeEscaped || !equalSamples(r.got, truth(t, queues)) {
		t.Errorf("escaped: %v %+v\n%s", err, res, r)
	}

	// Without build_info, backslashes cannot be read.
	for _, style := range []fakeapi.PluginStyle{fakeapi.PluginRaw, fakeapi.PluginEscaped} {
		body := fakeapi.RenderPlugin(style, queues, noBuild)
		if _, _, err := parseRecorded(body, Limits{}); !errors.Is(err, ErrAmbiguous) || !strings.Contains(err.Error(), "build_info") {
			t.Errorf("%s without build_info: err %v, want ErrAmbiguous naming build_info", style, err)
		}
	}
	// ... but names without backslashes or quotes can.
	plain := queuesNamed("/", "a", "b c", "ü")
	for _, style := range []fakeapi.PluginStyle{fakeapi.PluginRaw, fakeapi.PluginEscaped} {
		body := fakeapi.RenderPlugin(style, plain, noBuild)
		r, res, err := parseRecorded(body, Limits{})
		if err != nil || res.Mode != ModeUnknown || !equalSamples(r.got, truth(t, plain)) || res.RabbitMQVersion != "" {
			t.Errorf("%s without build_info, plain names: %v %+v\n%s", style, err, res, r)
		}
	}
	// A bare quote or a lone backslash can only be raw: it settles the mode
	// without build_info, and is refused under an escaping version.
	rawOnly := append(queuesNamed("/", `q "quoted"`, `lone \ backslash`), queues...)
	body := fakeapi.RenderPlugin(fakeapi.PluginRaw, rawOnly, noBuild)
	if r, res, err := parseRecorded(body, Limits{}); err != nil || res.Mode != ModeRaw || !equalSamples(r.got, truth(t, rawOnly)) {
		t.Errorf("raw-only labels without build_info: %v %+v\n%s", err, res, r)
	}
	for _, q := range rawOnly[:2] {
		body := fakeapi.RenderPlugin(fakeapi.PluginRaw, []fakeapi.PluginQueue{q}, fakeapi.DefaultPluginInfo(fakeapi.PluginEscaped))
		if _, _, err := parseRecorded(body, Limits{}); !errors.Is(err, ErrAmbiguous) {
			t.Errorf("%q under an escaping version: err %v, want ErrAmbiguous", q.Name, err)
		}
	}
	// Held labels are bounded.
	if _, _, err := parseRecorded(raw, Limits{MaxHeldBytes: 40}); !errors.Is(err, ErrAmbiguous) {
		t.Errorf("held labels over the limit: err %v, want ErrAmbiguous", err)
	}
}

// moveBuildInfoFirst puts the build_info block before the queue families.
func moveBuildInfoFirst(t *testing.T, body []byte) []byte {
	s := string(body)
	i := strings.Index(s, "# TYPE rabbitmq_build_info")
	j := strings.Index(s, "# TYPE rabbitmq_identity_info")
	if i < 0 || j < i {
		t.Fatal("no build_info block")
	}
	return []byte(s[i:j] + s[:i] + s[j:])
}

func TestModeOf(t *testing.T) {
	for v, want := range map[string]Mode{
		"3.8.9": ModeEscaped, "3.9.8": ModeEscaped, "3.9.9": ModeRaw, "3.10.0": ModeRaw, "3.10.8": ModeRaw,
		"3.11.27": ModeRaw, "3.11.28": ModeEscaped, "3.12.0": ModeRaw, "3.12.10": ModeRaw, "3.12.11": ModeEscaped,
		"3.13.0": ModeEscaped, "3.13.0-rc.3": ModeUnknown, "3.12.5-beta.1": ModeUnknown, "4.0.0-beta.1": ModeEscaped,
		"4.2.3": ModeEscaped, "4.3.0+12.gdeadbee": ModeEscaped, "10.0.0": ModeEscaped,
		"": ModeUnknown, "3.10": ModeUnknown, "3.x.1": ModeUnknown, "3.10.+8": ModeUnknown,
	} {
		if got := modeOf(v, ""); got != want {
			t.Errorf("modeOf(%q) = %v, want %v", v, got, want)
		}
		if got := modeOf("", v); got != want {
			t.Errorf("modeOf(\"\", %q) = %v, want %v", v, got, want)
		}
	}
}

func TestKeep(t *testing.T) {
	queues := append(queuesNamed("/", "a", `b\x`, "c"), queuesNamed("other", "a")...)
	body := fakeapi.RenderPlugin(fakeapi.PluginRaw, queues, fakeapi.DefaultPluginInfo(fakeapi.PluginRaw))
	r := newRecorder()
	res, err := Parse(bytes.NewReader(body), r, func(vhost, name []byte) bool { return string(vhost) == "/" && string(name) != "c" }, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := truth(t, queues[:2])
	if !equalSamples(r.got, want) || res.Rejected != 6 || res.Samples != 6 || res.Queues != 4 {
		t.Errorf("%+v\n%s\nwant\n%s", res, r, formatSamples(want))
	}
}

// TestCollisions: names that differ only in invalid UTF-8 become one series
// in a QueueSet, which keeps the first queue's counts and counts the other
// as a duplicate; Parse does not refuse them.
func TestCollisions(t *testing.T) {
	queues := queuesNamed("/", "a\xff", "a\xfe")
	body := fakeapi.RenderPlugin(fakeapi.PluginEscaped, queues, fakeapi.DefaultPluginInfo(fakeapi.PluginEscaped))
	qs := queueset.NewQueueSet("h", 0)
	if _, err := Parse(bytes.NewReader(body), qs, nil, Limits{}); err != nil {
		t.Fatal(err)
	}
	got := exposed(t, qs)
	want := truth(t, queuesNamed("/", "a\uFFFD"))
	if !equalSamples(got, want) || qs.Duplicates() != 1 {
		t.Errorf("got %v (%d duplicates), want %v", got, qs.Duplicates(), want)
	}
}

// TestReadSizes feeds the answer one byte at a time, in odd chunks and with
// lines longer than the window, and expects the same reading.
func TestReadSizes(t *testing.T) {
	long := strings.Repeat("x", readWindow+1000)
	queues := queuesNamed("/", "a", long, "b", strings.Repeat(`\`, 300))
	for _, style := range []fakeapi.PluginStyle{fakeapi.PluginRaw, fakeapi.PluginEscaped} {
		body := fakeapi.RenderPlugin(style, queues, fakeapi.DefaultPluginInfo(style))
		for name, r := range map[string]func() *recorder{
			"one byte": func() *recorder {
				rec := newRecorder()
				if _, err := Parse(iotest.OneByteReader(bytes.NewReader(body)), rec, nil, Limits{MaxLineBytes: 2 * readWindow}); err != nil {
					t.Fatalf("%s one byte: %v", style, err)
				}
				return rec
			},
			"half": func() *recorder {
				rec := newRecorder()
				if _, err := Parse(iotest.HalfReader(bytes.NewReader(body)), rec, nil, Limits{MaxLineBytes: 2 * readWindow}); err != nil {
					t.Fatalf("%s half: %v", style, err)
				}
				return rec
			},
		} {
			if got := r(); !equalSamples(got.got, truth(t, queues)) {
				t.Errorf("%s %s: wrong reading", style, name)
			}
		}
		if _, _, err := parseRecorded(body, Limits{}); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "longer than") {
			t.Errorf("%s: a line over the default limit: err %v", style, err)
		}
	}
	// A reader error is returned as it is.
	boom := errors.New("boom")
	if _, err := Parse(iotest.ErrReader(boom), newRecorder(), nil, Limits{}); !errors.Is(err, boom) {
		t.Errorf("reader error: %v", err)
	}
	// The sink's error too.
	body := fakeapi.RenderPlugin(fakeapi.PluginRaw, queuesNamed("/", "a"), fakeapi.DefaultPluginInfo(fakeapi.PluginRaw))
	if _, err := Parse(bytes.NewReader(body), queueset.NewQueueSet("h", 1), nil, Limits{}); !errors.Is(err, queueset.ErrTooLarge) {
		t.Errorf("sink error: %v", err)
	}
}

func TestErrorsAreOneLine(t *testing.T) {
	body := fakeapi.RenderPlugin(fakeapi.PluginRaw, queuesNamed("/", "x\n\"} 5\n\x01"), fakeapi.DefaultPluginInfo(fakeapi.PluginRaw))
	_, _, err := parseRecorded(body, Limits{})
	if err == nil || strings.ContainsAny(err.Error(), "\n\r") {
		t.Fatalf("error %q", err)
	}
	t.Log(err)
}

// TestKeepAskedOncePerQueue: with families in the same order keep sees each
// queue once; when a family lists them in another order, the answers still
// belong to the right queues.
func TestKeepAskedOncePerQueue(t *testing.T) {
	queues := queuesNamed("/", "a", "b", "c", "d")
	body := string(fakeapi.RenderPlugin(fakeapi.PluginRaw, queues, fakeapi.DefaultPluginInfo(fakeapi.PluginRaw)))
	const unackedA = "rabbitmq_detailed_queue_messages_unacked{vhost=\"/\",queue=\"a\"} 0\n"
	const unackedD = "rabbitmq_detailed_queue_messages_unacked{vhost=\"/\",queue=\"d\"} 30\n"
	swapped := strings.Replace(strings.Replace(body, unackedA, "A\n", 1), unackedD, unackedA, 1)
	swapped = strings.Replace(swapped, "A\n", unackedD, 1)
	if swapped == body {
		t.Fatal("the lines to swap are not in the answer")
	}
	for what, b := range map[string]string{"same order": body, "swapped": swapped} {
		calls := 0
		r := newRecorder()
		_, err := Parse(strings.NewReader(b), r, func(vhost, name []byte) bool { calls++; return string(name) != "b" && string(name) != "d" }, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		want := truth(t, []fakeapi.PluginQueue{queues[0], queues[2]})
		if !equalSamples(r.got, want) {
			t.Errorf("%s: read\n%s\nwant\n%s", what, r, formatSamples(want))
		}
		if what == "same order" && calls != len(queues) {
			t.Errorf("keep called %d times for %d queues", calls, len(queues))
		}
	}
}

// TestKnownVhostsResolveSplits: a raw label with several possible
// vhost/queue splits reads one way when exactly one split names a known vhost.
func TestKnownVhostsResolveSplits(t *testing.T) {
	queues := []fakeapi.PluginQueue{
		{Vhost: "fixtures", Name: `x",queue="evil`, Ready: 1, Messages: 1},
		{Vhost: "fixtures", Name: "plain", Ready: 2, Messages: 2},
	}
	body := fakeapi.RenderPlugin(fakeapi.PluginRaw, queues, fakeapi.DefaultPluginInfo(fakeapi.PluginRaw))
	for _, tc := range []struct {
		name   string
		vhosts map[string]bool
		ok     bool
	}{
		{name: "no vhost list", vhosts: nil},
		{name: "the vhost is known", vhosts: map[string]bool{"fixtures": true, "/": true}, ok: true},
		{name: "the vhost is not known", vhosts: map[string]bool{"/": true}},
		{name: "both splits name a known vhost", vhosts: map[string]bool{"fixtures": true, `fixtures",queue="x`: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			_, err := Parse(bytes.NewReader(body), rec, nil, Limits{Vhosts: tc.vhosts})
			if !tc.ok {
				if !errors.Is(err, ErrAmbiguous) {
					t.Fatalf("err = %v, want ErrAmbiguous", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := map[sample]int64{}
			for _, q := range queues {
				for f, v := range []int64{q.Messages, q.Ready, q.Unacked} {
					want[sample{f, q.Vhost, q.Name}] = v
				}
			}
			if !equalSamples(rec.got, want) {
				t.Fatalf("got\n%s\nwant\n%s", rec, formatSamples(want))
			}
		})
	}
}
