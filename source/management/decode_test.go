package management

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
)

// testQueue is a comparable copy of Queue (whose byte slices die with the callback).
type testQueue struct {
	Vhost, Name string
	Counts      queue.Counts
	Has         queue.Presence
}

// Presence bits of today's counts, for the edge cases that spell their keys.
var (
	HasMessages               = queue.Bit(0)
	HasMessagesReady          = queue.Bit(1)
	HasMessagesUnacknowledged = queue.Bit(2)
)

func decodeAll(r io.Reader, lim DecodeLimits) ([]testQueue, error) {
	return decodeWith(r, lim, brokerKeys, nil)
}

// decodeWith decodes with the key table keys, filling stats when not nil.
func decodeWith(r io.Reader, lim DecodeLimits, keys *queueKeys, stats *decodeStats) ([]testQueue, error) {
	var out []testQueue
	err := decodeQueues(r, lim, keys, func(q *Queue) error {
		out = append(out, testQueue{string(q.Vhost), string(q.Name), q.Counts, q.Has})
		return nil
	}, stats)
	return out, err
}

func referenceDecode(data []byte) ([]testQueue, error) {
	return referenceDecodeKeys(data, managementKeys())
}

// referenceDecodeKeys is the contract DecodeQueues must match, expressed with encoding/json alone,
// for the count keys counts (indexed by field number): the body must be valid JSON (json.Valid,
// which also enforces its nesting limit of 10000); it is an array of queue objects or an object
// with exactly one "items" array of them, whose pagination members say it holds the whole listing.
// Within a queue object members are taken in order with exact key matching, so the last duplicate
// wins; each occurrence of name/vhost must unmarshal into a non-nil *string, and each count must
// unmarshal into *int64 (null clears it; encoding/json rejects strings, fractions like 1.0,
// exponents and overflow) and must not carry a minus sign.
func referenceDecodeKeys(data []byte, counts []string) ([]testQueue, error) {
	if !json.Valid(data) {
		return nil, errors.New("invalid JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('['):
		return refArray(dec, counts)
	case json.Delim('{'):
		return refPaged(dec, counts)
	}
	return nil, errors.New("top level not array or object")
}

func refPaged(dec *json.Decoder, counts []string) ([]testQueue, error) {
	var out []testQueue
	seen := map[string]bool{}
	values := map[string]int64{}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key := k.(string)
		switch key {
		case "items":
			if seen[key] {
				return nil, errors.New("duplicate items")
			}
			seen[key] = true
			if t, err := dec.Token(); err != nil || t != json.Delim('[') {
				return nil, errors.New("items not an array")
			}
			if out, err = refArray(dec, counts); err != nil {
				return nil, err
			}
		case "page_count", "item_count", "filtered_count", "total_count":
			if seen[key] {
				return nil, errors.New("duplicate " + key)
			}
			seen[key] = true
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return nil, err
			}
			var n *int64
			if err := json.Unmarshal(raw, &n); err != nil || n == nil || bytes.HasPrefix(bytes.TrimSpace(raw), []byte("-")) {
				return nil, fmt.Errorf("%s is not a non-negative integer", key)
			}
			values[key] = *n
		default:
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return nil, err
			}
		}
	}
	if !seen["items"] {
		return nil, errors.New("no items")
	}
	if n, ok := values["page_count"]; ok && n > 1 {
		return nil, errors.New("more than one page")
	}
	for _, key := range []string{"item_count", "filtered_count", "total_count"} {
		if n, ok := values[key]; ok && n != int64(len(out)) {
			return nil, errors.New(key + " is not the number of items")
		}
	}
	return out, nil
}

func refArray(dec *json.Decoder, counts []string) ([]testQueue, error) {
	var out []testQueue
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		q, err := refQueue(bytes.TrimSpace(raw), counts)
		if err != nil {
			return nil, err
		}
		out = append(out, q)
	}
	_, err := dec.Token() // ']'
	return out, err
}

func refQueue(raw []byte, counts []string) (testQueue, error) {
	var q testQueue
	if raw[0] != '{' {
		return q, errors.New("element not an object")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		return q, err
	}
	var haveName, haveVhost bool
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return q, err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return q, err
		}
		v = bytes.TrimSpace(v)
		switch k {
		case "name", "vhost":
			var s *string
			if err := json.Unmarshal(v, &s); err != nil || s == nil {
				return q, fmt.Errorf("%s not a string", k)
			}
			if k == "name" {
				q.Name, haveName = *s, true
			} else {
				q.Vhost, haveVhost = *s, true
			}
			continue
		}
		f := slices.Index(counts, k.(string))
		if f < 0 {
			continue
		}
		var n *int64
		if err := json.Unmarshal(v, &n); err != nil {
			return q, err
		}
		if n == nil {
			q.Counts[f], q.Has = 0, q.Has&^queue.Bit(f)
			continue
		}
		if v[0] == '-' {
			return q, errors.New("negative count")
		}
		q.Counts[f], q.Has = *n, q.Has|queue.Bit(f)
	}
	if !haveName || !haveVhost {
		return q, errors.New("missing name or vhost")
	}
	return q, nil
}

// structDecode is the plain way to read the listing with encoding/json, used on the recorded
// broker responses as a second, independent reference: a struct (built from queue.Fields)
// with a tagged field per key. It ignores pagination members.
func structDecode(t *testing.T, data []byte) []testQueue {
	t.Helper()
	fields := []reflect.StructField{
		{Name: "Name", Type: reflect.TypeFor[string](), Tag: `json:"name"`},
		{Name: "Vhost", Type: reflect.TypeFor[string](), Tag: `json:"vhost"`},
	}
	for i, f := range queue.Fields() {
		fields = append(fields, reflect.StructField{Name: fmt.Sprintf("Count%d", i), Type: reflect.TypeFor[*int64](), Tag: reflect.StructTag(`json:"` + f.Management + `"`)})
	}
	list := reflect.New(reflect.SliceOf(reflect.StructOf(fields)))
	if bytes.HasPrefix(data, []byte("{")) {
		page := reflect.New(reflect.StructOf([]reflect.StructField{{Name: "Items", Type: list.Elem().Type(), Tag: `json:"items"`}}))
		if err := json.Unmarshal(data, page.Interface()); err != nil {
			t.Fatal(err)
		}
		list.Elem().Set(page.Elem().Field(0))
	} else if err := json.Unmarshal(data, list.Interface()); err != nil {
		t.Fatal(err)
	}
	var out []testQueue
	for i := range list.Elem().Len() {
		r := list.Elem().Index(i)
		q := testQueue{Vhost: r.Field(1).String(), Name: r.Field(0).String()}
		for f := range queue.NumFields {
			if p := r.Field(2 + f); !p.IsNil() {
				q.Counts[f], q.Has = p.Elem().Int(), q.Has|queue.Bit(f)
			}
		}
		out = append(out, q)
	}
	return out
}

func testdataFiles(t testing.TB) map[string][]byte {
	t.Helper()
	names, err := filepath.Glob("testdata/*.json")
	if err != nil || len(names) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	files := map[string][]byte{}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(n)] = b
	}
	return files
}

func TestDecodeTestdata(t *testing.T) {
	wantLen := map[string]int{
		"queues-3.10.8-columns-stats.json": 4,
		"queues-3.10.8-default.json":       4,
		"queues-3.10.8-lean.json":          4,
		"queues-3.10.8-totals.json":        4,
		"queues-3.10.8-paged-empty.json":   0,
	}
	// Pages of a longer listing, which the exporter must not take for the whole.
	wantErr := map[string]string{
		"queues-3.10.8-paged.json": `paginated response is one of 2 pages ("page_count")`,
		"queues-4.x-paged.json":    `paginated response is one of 2 pages ("page_count")`,
	}
	for name, data := range testdataFiles(t) {
		t.Run(name, func(t *testing.T) {
			got, err := decodeAll(bytes.NewReader(data), DecodeLimits{})
			slow, slowErr := decodeAll(iotest.OneByteReader(bytes.NewReader(data)), DecodeLimits{})
			if fmt.Sprint(slowErr) != fmt.Sprint(err) || !reflect.DeepEqual(slow, got) {
				t.Errorf("one byte at a time: err %v, got %+v", slowErr, slow)
			}
			if want, ok := wantErr[name]; ok {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("got %v, want %q", err, want)
				}
				if _, refErr := referenceDecode(data); refErr == nil {
					t.Error("referenceDecode accepts it")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if w, ok := wantLen[name]; ok && len(got) != w {
				t.Errorf("got %d queues, want %d", len(got), w)
			}
			if want := structDecode(t, data); !reflect.DeepEqual(got, want) {
				t.Errorf("DecodeQueues differs from encoding/json struct decoding:\n got %+v\nwant %+v", got, want)
			}
			if want, err := referenceDecode(data); err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("DecodeQueues differs from referenceDecode (err %v):\n got %+v\nwant %+v", err, got, want)
			}
		})
	}
}

func TestDecodeTestdataValues(t *testing.T) {
	// Pin a few values so a bug shared with the references would still show.
	got, err := decodeAll(bytes.NewReader(testdataFiles(t)["queues-3.10.8-lean.json"]), DecodeLimits{})
	if err != nil {
		t.Fatal(err)
	}
	want := []testQueue{
		{"/", "fx.classic", queue.Counts{3, 3, 0}, 7},
		{"/", "fx.quorum", queue.Counts{3, 3, 0}, 7},
		{"/", "fx.stream", queue.Counts{}, 0},
		{"fx v", `fx.q"uote`, queue.Counts{}, 7},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

type edgeCase struct {
	name    string
	in      string
	lim     DecodeLimits
	want    []testQueue // when err == ""
	err     string      // expected error substring
	limitOK bool        // failure comes from lim, so encoding/json is expected to accept
}

// q builds an expected queue with all three counts present.
func q(vhost, name string, m, r, u int64) testQueue {
	return testQueue{vhost, name, queue.Counts{m, r, u}, HasMessages | HasMessagesReady | HasMessagesUnacknowledged}
}

const okObj = `{"name":"a","vhost":"/"}`

var edgeCases = []edgeCase{
	// Accepted shapes.
	{name: "empty array", in: `[]`, want: nil},
	{name: "whitespace everywhere", in: " \t\r\n[ \n{ \"messages\" :\t1 , \"name\"\r: \"a\" ,\"vhost\":\"/\" } ,\n{\"name\":\"b\",\"vhost\":\"/\"}\t] \n",
		want: []testQueue{{"/", "a", queue.Counts{1, 0, 0}, HasMessages}, {"/", "b", queue.Counts{}, 0}}},
	{name: "broker key order", in: `[{"messages":10,"messages_ready":7,"messages_unacknowledged":3,"name":"q","vhost":"v"}]`,
		want: []testQueue{q("v", "q", 10, 7, 3)}},
	// The broker's exact spelling takes a fast path; these stay on it or leave it at the edges.
	{name: "broker order many", in: `[{"messages":0,"messages_ready":0,"messages_unacknowledged":0,"name":"","vhost":""},` +
		`{"messages":999999999999999999,"messages_ready":10,"messages_unacknowledged":123456789,"name":"a b","vhost":"/"},` +
		`{"name":"s","vhost":"v"}]`,
		want: []testQueue{q("", "", 0, 0, 0), q("/", "a b", 999999999999999999, 10, 123456789), {"v", "s", queue.Counts{}, 0}}},
	{name: "broker order max int64", in: `[{"messages":9223372036854775807,"messages_ready":1,"messages_unacknowledged":2,"name":"q","vhost":"v"}]`,
		want: []testQueue{q("v", "q", 9223372036854775807, 1, 2)}},
	{name: "broker order escapes and utf8", in: `[{"messages":1,"messages_ready":1,"messages_unacknowledged":0,"name":"a\"b","vhost":"é"}]`,
		want: []testQueue{q("é", "a\"b", 1, 1, 0)}},
	{name: "broker order then more keys", in: `[{"messages":1,"messages_ready":1,"messages_unacknowledged":0,"name":"q","vhost":"v","messages":null}]`,
		want: []testQueue{{"v", "q", queue.Counts{0, 1, 0}, HasMessagesReady | HasMessagesUnacknowledged}}},
	{name: "broker order null count", in: `[{"messages":null,"messages_ready":1,"messages_unacknowledged":0,"name":"q","vhost":"v"}]`,
		want: []testQueue{{"v", "q", queue.Counts{0, 1, 0}, HasMessagesReady | HasMessagesUnacknowledged}}},
	{name: "broker order name at limit", in: `[{"name":"abcde","vhost":"vwxyz"}]`, lim: DecodeLimits{MaxStringBytes: 5},
		want: []testQueue{{"vwxyz", "abcde", queue.Counts{}, 0}}},
	{name: "broker order depth at limit", in: `[{"name":"a","vhost":"b"}]`, lim: DecodeLimits{MaxDepth: 2},
		want: []testQueue{{"b", "a", queue.Counts{}, 0}}},
	{name: "absent counts", in: `[{"name":"q","vhost":"v","messages_ready":2}]`,
		want: []testQueue{{"v", "q", queue.Counts{0, 2, 0}, HasMessagesReady}}},
	{name: "null counts", in: `[{"name":"q","vhost":"v","messages":null,"messages_ready":null,"messages_unacknowledged":0}]`,
		want: []testQueue{{"v", "q", queue.Counts{}, HasMessagesUnacknowledged}}},
	{name: "zero and max int64", in: `[{"name":"q","vhost":"v","messages":0,"messages_ready":9223372036854775807,"messages_unacknowledged":1234567890123}]`,
		want: []testQueue{q("v", "q", 0, 9223372036854775807, 1234567890123)}},
	{name: "duplicate count null wins", in: `[{"name":"q","vhost":"v","messages":1,"messages":null}]`,
		want: []testQueue{{"v", "q", queue.Counts{}, 0}}},
	{name: "duplicate count last wins", in: `[{"name":"q","vhost":"v","messages":null,"messages":5,"messages":6}]`,
		want: []testQueue{{"v", "q", queue.Counts{6, 0, 0}, HasMessages}}},
	{name: "duplicate name last wins", in: `[{"name":"first-longer","vhost":"v","name":"b","vhost":"w"}]`,
		want: []testQueue{{"w", "b", queue.Counts{}, 0}}},
	{name: "simple escapes", in: `[{"name":"a\"b\\c\/d\b\f\n\r\te","vhost":""}]`,
		want: []testQueue{{"", "a\"b\\c/d\b\f\n\r\te", queue.Counts{}, 0}}},
	{name: "unicode escapes", in: `[{"name":"\u00e9\u20AC\ud83d\ude00\u0000","vhost":"\u002F"}]`,
		want: []testQueue{{"/", "é€😀\x00", queue.Counts{}, 0}}},
	{name: "lone surrogates", in: `[{"name":"\ud800x\udc00|\ud800\u0041|\ud800\ud800\udc00|\udbff","vhost":"/"}]`,
		want: []testQueue{{"/", "\uFFFDx\uFFFD|\uFFFDA|\uFFFD\U00010000|\uFFFD", queue.Counts{}, 0}}},
	{name: "surrogate then simple escape", in: `[{"name":"\ud800\n","vhost":"/"}]`,
		want: []testQueue{{"/", "\uFFFD\n", queue.Counts{}, 0}}},
	{name: "raw utf8", in: "[{\"name\":\"é漢😀\",\"vhost\":\"/\"}]",
		want: []testQueue{{"/", "é漢😀", queue.Counts{}, 0}}},
	{name: "invalid utf8 replaced", in: "[{\"name\":\"a\xffb\xe2\x82|\xc0\xaf|\xed\xa0\x80\",\"vhost\":\"\x80\"}]",
		want: []testQueue{{"\uFFFD", "a\uFFFDb\uFFFD\uFFFD|\uFFFD\uFFFD|\uFFFD\uFFFD\uFFFD", queue.Counts{}, 0}}},
	{name: "escaped key matches", in: `[{"na\u006de":"x","\u0076host":"/","messages\u005fready":4}]`,
		want: []testQueue{{"/", "x", queue.Counts{0, 4, 0}, HasMessagesReady}}},
	{name: "keys are case sensitive", in: `[{"Name":1,"NAME":null,"name":"x","vhost":"/","Messages":"x"}]`,
		want: []testQueue{{"/", "x", queue.Counts{}, 0}}},
	{name: "nested skipped values", in: `[{"arguments":{"a":[1,{"b":null,"name":5}],"c":"\u0041\"","":{}},"x":[],"y":{},` +
		`"z":-1.5e+10,"z2":0.0,"z3":1E-2,"z4":-0,"t":true,"f":false,"n":null,"s":"messages",` +
		`"name":"q","vhost":"v","messages_details":{"rate":0.0},"messages":2}]`,
		want: []testQueue{{"v", "q", queue.Counts{2, 0, 0}, HasMessages}}},
	{name: "paginated items last", in: `{"filtered_count":1,"page":1,"x":[{"name":5}],"items":[` + okObj + `]}`,
		want: []testQueue{{"/", "a", queue.Counts{}, 0}}},
	{name: "paginated items first", in: `{ "items" : [` + okObj + `,` + okObj + `] , "page":{"a":[1,2]},"total_count":2}`,
		want: []testQueue{{"/", "a", queue.Counts{}, 0}, {"/", "a", queue.Counts{}, 0}}},
	{name: "paginated empty items", in: `{"items":[],"page":1}`, want: nil},
	{name: "string exactly at limit", in: `[{"name":"abcde","vhost":"/"}]`, lim: DecodeLimits{MaxStringBytes: 5},
		want: []testQueue{{"/", "abcde", queue.Counts{}, 0}}},
	{name: "depth exactly at limit", in: `[{"name":"a","vhost":"/","x":[1]}]`, lim: DecodeLimits{MaxDepth: 3},
		want: []testQueue{{"/", "a", queue.Counts{}, 0}}},

	// Truncation.
	{name: "empty body", in: ``, err: "truncated"},
	{name: "only whitespace", in: " \n", err: "truncated"},
	{name: "open array", in: `[`, err: "truncated"},
	{name: "open object", in: `[{"name":"a"`, err: "truncated"},
	{name: "open string", in: `[{"name":"a`, err: "truncated"},
	{name: "open key", in: `[{"na`, err: "truncated"},
	{name: "no colon", in: `[{"name"`, err: "truncated"},
	{name: "no array end", in: `[{"name":"a","vhost":"/"}`, err: "truncated"},
	{name: "open escape", in: `[{"name":"\`, err: "truncated"},
	{name: "open unicode escape", in: `[{"name":"\u00`, err: "truncated"},
	{name: "open surrogate pair", in: `[{"name":"\ud83d\ude0`, err: "truncated"},
	{name: "open literal", in: `[{"x":tru`, err: "truncated"},
	{name: "open number", in: `[{"x":-`, err: "truncated"},
	{name: "open fraction", in: `[{"x":1.`, err: "truncated"},
	{name: "open exponent", in: `[{"x":1e+`, err: "truncated"},
	{name: "open count", in: `[{"messages":12`, err: "truncated"},
	{name: "open skipped string", in: `[{"x":"abc\"`, err: "truncated"},
	{name: "open paginated", in: `{"items":[]`, err: "truncated"},
	{name: "open utf8", in: "[{\"name\":\"\xe2\x82", err: "truncated"},

	// Trailing data.
	{name: "trailing garbage", in: `[]x`, err: "invalid JSON at offset 2: trailing data after top-level value: 'x'"},
	{name: "second value", in: "[] \n[]", err: "trailing data"},
	{name: "extra bracket", in: `[]]`, err: "trailing data"},
	{name: "trailing after paginated", in: `{"items":[]}{}`, err: "trailing data"},

	// Malformed JSON.
	{name: "trailing comma in object", in: `[{"name":"a","vhost":"/",}]`, err: "expected string key"},
	{name: "trailing comma in array", in: `[` + okObj + `,]`, err: "invalid character ']' after ','"},
	{name: "leading comma", in: `[,]`, err: "is not an object"},
	{name: "missing comma", in: `[{"name":"a" "vhost":"/"}]`, err: "after object value"},
	{name: "missing comma between queues", in: `[` + okObj + okObj + `]`, err: "after array element"},
	{name: "unquoted key", in: `[{name:"a"}]`, err: "expected string key"},
	{name: "missing colon", in: `[{"name" "a"}]`, err: "after object key"},
	{name: "single quotes", in: `[{'name':'a'}]`, err: "expected string key"},
	{name: "leading zero skipped", in: `[{"x":01,` + okObj[1:] + `]`, err: "invalid character '1' after object value"},
	{name: "leading zero count", in: `[{"messages":00,"name":"a","vhost":"/"}]`, err: "invalid character '0' after object value"},
	{name: "double fraction", in: `[{"x":1.5.3}]`, err: "after object value"},
	{name: "bare fraction", in: `[{"x":.5}]`, err: "looking for beginning of value"},
	{name: "plus sign", in: `[{"x":+1}]`, err: "looking for beginning of value"},
	{name: "empty exponent", in: `[{"x":1e}]`, err: "in number"},
	{name: "minus only", in: `[{"x":-}]`, err: "in number"},
	{name: "hex number", in: `[{"x":0x1}]`, err: "after object value"},
	{name: "bad literal", in: `[{"x":nul}]`, err: "in literal null"},
	{name: "capital literal", in: `[{"x":True}]`, err: "looking for beginning of value"},
	{name: "bad escape", in: `[{"name":"\x","vhost":"/"}]`, err: "invalid escape 'x'"},
	{name: "bad escape skipped", in: `[{"x":"\'"}]`, err: `invalid escape '\''`},
	{name: "bad hex", in: `[{"name":"\u12G4","vhost":"/"}]`, err: "in \\u escape"},
	{name: "bad hex skipped", in: `[{"x":"\u12G4"}]`, err: "in \\u escape"},
	{name: "bad hex in key", in: `[{"\u00g1":1}]`, err: "in \\u escape"},
	{name: "bad hex after high surrogate", in: `[{"name":"\ud800\u00g0","vhost":"/"}]`, err: "in \\u escape"},
	{name: "raw newline in string", in: "[{\"name\":\"a\nb\",\"vhost\":\"/\"}]", err: "control character '\\n'"},
	{name: "raw tab in skipped string", in: "[{\"x\":\"a\tb\"}]", err: "control character"},
	{name: "raw control in key", in: "[{\"a\x01\":1}]", err: "control character"},
	{name: "nan", in: `[{"x":NaN}]`, err: "looking for beginning of value"},
	{name: "comment", in: `[/**/]`, err: "is not an object"},
	{name: "bom", in: "\xef\xbb\xbf[]", err: "found invalid character byte 0xef"},

	// Wrong shape.
	{name: "top null", in: `null`, err: "expected a JSON array or object of queues, found null"},
	{name: "top string", in: `"x"`, err: "found a string"},
	{name: "top number", in: ` 1`, err: "found a number"},
	{name: "element number", in: `[1]`, err: "element at offset 1 is not an object: found a number"},
	{name: "element null", in: `[` + okObj + `,null]`, err: "is not an object: found null"},
	{name: "element array", in: `[[]]`, err: "is not an object: found an array"},
	{name: "element string", in: `["q"]`, err: "is not an object: found a string"},
	{name: "missing name", in: `[{"vhost":"/","messages":1}]`, err: `queue object at offset 1 has no "name"`},
	{name: "missing vhost", in: `[` + okObj + `,{"name":"a"}]`, err: `has no "vhost"`},
	{name: "empty queue object", in: `[{}]`, err: `has no "name"`},
	{name: "null name", in: `[{"name":null,"vhost":"/"}]`, err: `"name" at offset 9 must be a string, found null`},
	{name: "null name overridden", in: `[{"name":null,"name":"a","vhost":"/"}]`, err: `"name" at offset 9 must be a string`},
	{name: "number name", in: `[{"name":1,"vhost":"/"}]`, err: `"name" at offset 9 must be a string, found a number`},
	{name: "object vhost", in: `[{"name":"a","vhost":{}}]`, err: `"vhost" at offset 21 must be a string, found an object`},
	{name: "array vhost", in: `[{"name":"a","vhost":["/"]}]`, err: `"vhost" at offset 21 must be a string, found an array`},
	{name: "string count", in: `[{"messages":"3","name":"a","vhost":"/"}]`, err: `"messages" at offset 13 must be a non-negative integer or null, found a string`},
	{name: "bool count", in: `[{"messages_ready":true,"name":"a","vhost":"/"}]`, err: `"messages_ready" at offset 19 must be a non-negative integer or null, found a boolean`},
	{name: "object count", in: `[{"messages_unacknowledged":{},"name":"a","vhost":"/"}]`, err: `"messages_unacknowledged" at offset 28 must be a non-negative integer or null, found an object`},
	{name: "array count", in: `[{"messages":[1],"name":"a","vhost":"/"}]`, err: `"messages" at offset 13 must be a non-negative integer or null, found an array`},
	{name: "fraction count", in: `[{"messages":3.0,"name":"a","vhost":"/"}]`, err: `"messages" at offset 13 must be an integer, found a fraction or exponent`},
	{name: "exponent count", in: `[{"messages":1e2,"name":"a","vhost":"/"}]`, err: `"messages" at offset 13 must be an integer`},
	{name: "capital exponent count", in: `[{"messages":0E0,"name":"a","vhost":"/"}]`, err: `must be an integer`},
	{name: "negative count", in: `[{"messages":-1,"name":"a","vhost":"/"}]`, err: `"messages" at offset 13 must be a non-negative integer, found a negative number`},
	{name: "negative zero count", in: `[{"messages":-0,"name":"a","vhost":"/"}]`, err: `found a negative number`},
	{name: "overflow count", in: `[{"messages":9223372036854775808,"name":"a","vhost":"/"}]`, err: `"messages" at offset 13 overflows int64`},
	{name: "20 digit count", in: `[{"messages":12345678901234567890,"name":"a","vhost":"/"}]`, err: `overflows int64`},
	{name: "huge count", in: `[{"messages":99999999999999999999999999,"name":"a","vhost":"/"}]`, err: `overflows int64`},
	{name: "bad count late", in: `[` + okObj + `,{"name":"b","vhost":"/","messages":"x"}]`, err: `"messages" at offset 61`},
	{name: "broker order leading zero", in: `[{"messages":01,"messages_ready":1,"messages_unacknowledged":0,"name":"q","vhost":"v"}]`, err: "invalid character '1' after object value"},
	{name: "broker order fraction", in: `[{"messages":1,"messages_ready":1.0,"messages_unacknowledged":0,"name":"q","vhost":"v"}]`, err: `"messages_ready" at offset 32 must be an integer`},
	{name: "broker order overflow", in: `[{"messages":1,"messages_ready":1,"messages_unacknowledged":9223372036854775808,"name":"q","vhost":"v"}]`, err: "overflows int64"},
	{name: "broker order control character", in: "[{\"name\":\"a\tb\",\"vhost\":\"v\"}]", err: "control character"},
	{name: "broker order name too long", in: `[{"name":"abcdef","vhost":"v"}]`, lim: DecodeLimits{MaxStringBytes: 5}, err: "longer than 5 bytes", limitOK: true},
	{name: "broker order vhost too long", in: `[{"name":"a","vhost":"abcdef"}]`, lim: DecodeLimits{MaxStringBytes: 5}, err: "longer than 5 bytes", limitOK: true},
	{name: "broker order too deep", in: `[{"name":"a","vhost":"b"}]`, lim: DecodeLimits{MaxDepth: 1}, err: "nested deeper than 1", limitOK: true},
	{name: "broker order open object", in: `[{"messages":1,"messages_ready":1,"messages_unacknowledged":0,"name":"q","vhost":"v"`, err: "truncated"},
	{name: "paginated without items", in: `{"page":1,"total_count":0}`, err: `response object at offset 0 has no "items" array`},
	{name: "paginated empty object", in: `{}`, err: `has no "items"`},
	{name: "paginated null items", in: `{"items":null}`, err: `"items" must be an array, found null`},
	{name: "paginated object items", in: `{"items":{}}`, err: `"items" must be an array, found an object`},
	{name: "paginated duplicate items", in: `{"items":[],"items":[]}`, err: `duplicate "items"`},
	{name: "paginated bad item", in: `{"items":[1]}`, err: `is not an object`},
	// A paginated object must hold the whole listing (rabbit_mgmt_util:range_response).
	{name: "paginated whole", in: `{"filtered_count":2,"item_count":2,"items":[` + okObj + `,` + okObj + `],"page":1,"page_count":1,"page_size":100,"total_count":2}`,
		want: []testQueue{{"/", "a", queue.Counts{}, 0}, {"/", "a", queue.Counts{}, 0}}},
	{name: "paginated whole, counts first", in: `{"total_count":1,"page_count":1,"item_count":1,"filtered_count":1,"items":[` + okObj + `]}`,
		want: []testQueue{{"/", "a", queue.Counts{}, 0}}},
	{name: "paginated empty listing", in: `{"filtered_count":0,"item_count":0,"items":[],"page":1,"page_count":0,"page_size":100,"total_count":0}`, want: nil},
	{name: "paginated nested count keys are not the page's", in: `{"x":{"page_count":2,"total_count":9},"items":[` + okObj + `]}`,
		want: []testQueue{{"/", "a", queue.Counts{}, 0}}},
	{name: "paginated second page", in: `{"filtered_count":3,"item_count":1,"items":[` + okObj + `],"page":2,"page_count":2,"page_size":2,"total_count":3}`,
		err: `paginated response is one of 2 pages ("page_count"): the listing is incomplete`},
	{name: "paginated more pages before items", in: `{"page_count":3,"items":[` + okObj + `]}`, err: `one of 3 pages`},
	{name: "paginated more items than a page", in: `{"items":[` + okObj + `],"total_count":2}`,
		err: `paginated response holds 1 queues but its "total_count" is 2: the listing is incomplete`},
	{name: "paginated filtered", in: `{"items":[` + okObj + `],"filtered_count":1,"total_count":3}`, err: `its "total_count" is 3`},
	{name: "paginated item count differs", in: `{"item_count":2,"items":[` + okObj + `]}`, err: `its "item_count" is 2`},
	{name: "paginated filtered count differs", in: `{"items":[],"filtered_count":1}`, err: `holds 0 queues but its "filtered_count" is 1`},
	{name: "paginated page out of range", in: `{"items":[],"page":2,"page_count":1,"item_count":0,"total_count":1}`, err: `"total_count" is 1`},
	{name: "paginated duplicate page_count", in: `{"page_count":1,"items":[],"page_count":1}`, err: `duplicate "page_count" key`},
	{name: "paginated duplicate total_count", in: `{"total_count":0,"total_count":0,"items":[]}`, err: `duplicate "total_count" key`},
	{name: "paginated null count", in: `{"items":[],"total_count":null}`, err: `paginated response field "total_count" at offset 26 must be a non-negative integer, found null`},
	{name: "paginated string count", in: `{"items":[],"page_count":"1"}`, err: `must be a non-negative integer, found a string`},
	{name: "paginated negative count", in: `{"items":[],"item_count":-0}`, err: `found a negative number`},
	{name: "paginated fraction count", in: `{"items":[],"item_count":0.0}`, err: `must be an integer, found a fraction`},
	{name: "paginated huge count", in: `{"items":[],"total_count":9223372036854775808}`, err: `overflows int64`},

	// Limits.
	{name: "name too long", in: `[{"name":"abcdef","vhost":"/"}]`, lim: DecodeLimits{MaxStringBytes: 5},
		err: "string at offset 9 longer than 5 bytes", limitOK: true},
	{name: "escaped name too long", in: `[{"name":"\u0041\u0041","vhost":"/"}]`, lim: DecodeLimits{MaxStringBytes: 8},
		err: "longer than 8 bytes", limitOK: true},
	{name: "key too long", in: `[{"abcdef":1,"name":"a","vhost":"/"}]`, lim: DecodeLimits{MaxStringBytes: 5}, err: "string at offset 2 longer than 5 bytes", limitOK: true},
	{name: "skipped string too long", in: `[{"x":"abcdef","name":"a","vhost":"/"}]`, lim: DecodeLimits{MaxStringBytes: 5}, err: "longer than 5 bytes", limitOK: true},
	{name: "skipped number too long", in: `[{"x":1.23456,"name":"a","vhost":"/"}]`, lim: DecodeLimits{MaxStringBytes: 5}, err: "number at offset 6 longer than 5 bytes", limitOK: true},
	{name: "skipped number at limit", in: `[{"x":-1.2e5,"name":"a","vhost":"/"}]`, lim: DecodeLimits{MaxStringBytes: 6}, want: []testQueue{{"/", "a", queue.Counts{}, 0}}},
	{name: "too deep skipped", in: `[{"name":"a","vhost":"/","x":[[1]]}]`, lim: DecodeLimits{MaxDepth: 3},
		err: "nested deeper than 3 levels at offset 30", limitOK: true},
	{name: "too deep paginated", in: `{"items":[{"name":"a","vhost":"/"}]}`, lim: DecodeLimits{MaxDepth: 2},
		err: "nested deeper than 2 levels", limitOK: true},
	{name: "too deep default", in: `[{"name":"a","vhost":"/","x":` + strings.Repeat("[", 63) + strings.Repeat("]", 63) + `}]`,
		err: "nested deeper than 64 levels", limitOK: true},
	{name: "deep within default", in: `[{"name":"a","vhost":"/","x":` + strings.Repeat("[", 62) + strings.Repeat("]", 62) + `}]`,
		want: []testQueue{{"/", "a", queue.Counts{}, 0}}},
}

func TestDecodeEdgeCases(t *testing.T) {
	for _, tc := range edgeCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeAll(strings.NewReader(tc.in), tc.lim)
			checkCase(t, tc, got, err)
			ref, refErr := referenceDecode([]byte(tc.in))
			switch {
			case tc.err == "" || tc.limitOK:
				if refErr != nil {
					t.Errorf("reference rejects: %v", refErr)
				} else if tc.err == "" && !reflect.DeepEqual(ref, got) {
					t.Errorf("reference differs: %+v", ref)
				}
			case refErr == nil:
				t.Errorf("reference accepts what DecodeQueues rejects: %+v", ref)
			}
		})
	}
}

func checkCase(t *testing.T, tc edgeCase, got []testQueue, err error) {
	t.Helper()
	if tc.err == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Fatalf("got  %#v\nwant %#v", got, tc.want)
		}
		return
	}
	if err == nil {
		t.Fatalf("no error, want %q; got %+v", tc.err, got)
	}
	if !strings.Contains(err.Error(), tc.err) {
		t.Fatalf("error %q does not contain %q", err, tc.err)
	}
	if strings.ContainsAny(err.Error(), "\n\r") {
		t.Fatalf("error is not one line: %q", err)
	}
}

// splitReader returns data in two reads split at n, putting every possible refill boundary
// (inside escapes, surrogate pairs, numbers, literals, UTF-8 sequences) under test.
type splitReader struct {
	data []byte
	n    int
}

func (r *splitReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	k := len(r.data)
	if r.n > 0 {
		k, r.n = min(k, r.n), 0
	}
	k = copy(p, r.data[:k])
	r.data = r.data[k:]
	return k, nil
}

func TestDecodeChunking(t *testing.T) {
	for _, tc := range edgeCases {
		t.Run(tc.name, func(t *testing.T) {
			whole, wholeErr := decodeAll(strings.NewReader(tc.in), tc.lim)
			got, err := decodeAll(iotest.OneByteReader(strings.NewReader(tc.in)), tc.lim)
			checkCase(t, tc, got, err)
			if fmt.Sprint(err) != fmt.Sprint(wholeErr) || !reflect.DeepEqual(got, whole) {
				t.Fatalf("one byte reads: %v, whole: %v", err, wholeErr)
			}
			for n := 1; n < len(tc.in); n++ {
				got, err := decodeAll(&splitReader{[]byte(tc.in), n}, tc.lim)
				if fmt.Sprint(err) != fmt.Sprint(wholeErr) || !reflect.DeepEqual(got, whole) {
					t.Fatalf("split at %d: %v %#v, whole: %v", n, err, got, wholeErr)
				}
			}
			got, err = decodeAll(iotest.DataErrReader(strings.NewReader(tc.in)), tc.lim)
			if fmt.Sprint(err) != fmt.Sprint(wholeErr) || !reflect.DeepEqual(got, whole) {
				t.Fatalf("data with EOF: %v, whole: %v", err, wholeErr)
			}
		})
	}
}

func TestDecodeCallbackError(t *testing.T) {
	stop := errors.New("stop")
	calls := 0
	err := DecodeQueues(strings.NewReader(`[`+okObj+`,`+okObj+`,`+okObj+`]`), DecodeLimits{}, func(*Queue) error {
		calls++
		if calls == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("got %v, want the callback's error unchanged", err)
	}
	if calls != 2 {
		t.Fatalf("callback called %d times after failing", calls)
	}
}

func TestDecodeReadError(t *testing.T) {
	boom := errors.New("connection reset")
	body := `[` + okObj + `,{"name":"b`
	for _, r := range []io.Reader{
		io.MultiReader(strings.NewReader(body), iotest.ErrReader(boom)),
		iotest.TimeoutReader(strings.NewReader(body)), // data, then an error on the 2nd read
	} {
		_, err := decodeAll(r, DecodeLimits{})
		if err == nil || strings.Contains(err.Error(), "truncated") {
			t.Fatalf("got %v, want the read error", err)
		}
		if !errors.Is(err, boom) && !errors.Is(err, iotest.ErrTimeout) {
			t.Fatalf("error %v does not wrap the read error", err)
		}
	}
	// A read error after a complete value is still an error: the body may have been cut short.
	_, err := decodeAll(io.MultiReader(strings.NewReader(`[]`), iotest.ErrReader(boom)), DecodeLimits{})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want wrapped %v", err, boom)
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

func TestDecodeNoProgress(t *testing.T) {
	if err := DecodeQueues(zeroReader{}, DecodeLimits{}, nil); !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("got %v, want io.ErrNoProgress", err)
	}
}

// streamReader yields prefix, then repeats unit until limit bytes in total (forever when 0), then
// EOF. It counts what it handed out.
type streamReader struct {
	prefix, unit []byte
	limit, n     int64
}

func (r *streamReader) Read(p []byte) (int, error) {
	if r.limit > 0 && r.n >= r.limit {
		return 0, io.EOF
	}
	if r.limit > 0 && int64(len(p)) > r.limit-r.n {
		p = p[:r.limit-r.n]
	}
	k := 0
	if r.n < int64(len(r.prefix)) {
		k = copy(p, r.prefix[r.n:])
	}
	for k < len(p) {
		off := int((r.n + int64(k) - int64(len(r.prefix))) % int64(len(r.unit)))
		k += copy(p[k:], r.unit[off:])
	}
	r.n += int64(k)
	return k, nil
}

// measure runs DecodeQueues on r and reports the bytes it allocated.
func measure(t *testing.T, r io.Reader, lim DecodeLimits) (uint64, error) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	err := DecodeQueues(r, lim, func(*Queue) error { return nil })
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, err
}

func TestDecodeBoundedMemory(t *testing.T) {
	const maxStr = defaultMaxStringBytes
	// Without a bound on reading, these inputs never end; any buffering would exhaust memory.
	endless := []struct {
		name, prefix, unit, err string
	}{
		{"endless name", `[{"name":"`, "a", "longer than 65536 bytes"},
		{"endless escaped name", `[{"name":"`, `\u00e9`, "longer than 65536 bytes"},
		{"endless invalid utf8 name", `[{"vhost":"`, "\xff", "longer than 65536 bytes"},
		{"endless key", `[{"`, "k", "longer than 65536 bytes"},
		{"endless skipped string", `[{"name":"a","vhost":"/","x":"`, "b", "longer than 65536 bytes"},
		{"endless number in skipped key", `[{"x":[1,2,`, "7", "number at offset 11 longer than 65536 bytes"},
		{"endless fraction", `[{"x":0.`, "7", "longer than 65536 bytes"},
		{"endless count", `[{"messages":`, "9", "overflows int64"},
		{"endless nesting", `[{"name":"a","vhost":"/","x":`, "[", "nested deeper than 64 levels"},
		{"endless nested objects", `{"x":`, `{"a":`, "nested deeper than 64 levels"},
	}
	for _, tc := range endless {
		t.Run(tc.name, func(t *testing.T) {
			r := &streamReader{prefix: []byte(tc.prefix), unit: []byte(tc.unit)}
			alloc, err := measure(t, r, DecodeLimits{})
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("got %v, want %q", err, tc.err)
			}
			t.Logf("read %d bytes, allocated %d bytes: %v", r.n, alloc, err)
			if r.n > 3*maxStr {
				t.Errorf("read %d bytes, want at most %d", r.n, 3*maxStr)
			}
			// A kept string may decode to 3x its input (U+FFFD per invalid byte), and growing it
			// by appends allocates a few times that in total; still bounded, unlike the input.
			if alloc > 32*maxStr {
				t.Errorf("allocated %d bytes", alloc)
			}
		})
	}

	// A well-formed but huge skipped array needs no memory either; 32 MiB of it is cut off.
	t.Run("long array of numbers", func(t *testing.T) {
		r := &streamReader{prefix: []byte(`[{"name":"a","vhost":"/","x":[0`), unit: []byte(`,12345.5e-3`), limit: 32 << 20}
		alloc, err := measure(t, r, DecodeLimits{})
		if err == nil || !strings.Contains(err.Error(), "truncated") {
			t.Fatalf("got %v, want truncated", err)
		}
		if r.n != r.limit {
			t.Fatalf("read %d bytes, want all %d", r.n, r.limit)
		}
		if alloc > 1<<20 {
			t.Errorf("allocated %d bytes for %d bytes of input", alloc, r.n)
		}
	})

	// Same with many queues: nothing accumulates per queue.
	t.Run("many queues", func(t *testing.T) {
		unit := `{"messages":12,"messages_ready":10,"messages_unacknowledged":2,"name":"orders.eu-west.consumer-1","vhost":"v"},`
		r := &streamReader{prefix: []byte(`[`), unit: []byte(unit), limit: 32 << 20}
		alloc, err := measure(t, r, DecodeLimits{})
		if err == nil || !strings.Contains(err.Error(), "truncated") {
			t.Fatalf("got %v, want truncated", err)
		}
		if alloc > 1<<20 {
			t.Errorf("allocated %d bytes for %d bytes of input", alloc, r.n)
		}
	})
}

func TestDecodeNoAllocsPerQueue(t *testing.T) {
	body := func(n int) []byte {
		var b bytes.Buffer
		b.WriteString("[")
		for i := range n {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `{"arguments":{"x-queue-type":"quorum"},"messages":%d,"messages_ready":%d,"messages_unacknowledged":0,"name":"q\u00e9-%d","vhost":"v\\/%d"}`, i, i, i, i%7)
		}
		b.WriteString("]")
		return b.Bytes()
	}
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under -race")
	}
	small, large := body(1), body(5000)
	fn := func(*Queue) error { return nil }
	var r bytes.Reader
	allocs := func(data []byte) float64 {
		return testing.AllocsPerRun(20, func() {
			r.Reset(data)
			if err := DecodeQueues(&r, DecodeLimits{}, fn); err != nil {
				t.Fatal(err)
			}
		})
	}
	// The pooled decoder makes a call allocation-free once warm; a GC emptying the pool
	// during the runs averages out below 1.
	a1, a2 := allocs(small), allocs(large)
	if a1 > 0 || a2 > 0 {
		t.Errorf("%v allocations for 1 queue, %v for 5000, want 0", a1, a2)
	}
}

func TestDecodeConcurrent(t *testing.T) {
	// Decoders are pooled; concurrent calls must not share one (run with -race).
	data := testdataFiles(t)["queues-3.10.8-default.json"]
	want, err := decodeAll(bytes.NewReader(data), DecodeLimits{})
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for range cap(errs) {
		go func() {
			for range 50 {
				got, err := decodeAll(iotest.HalfReader(bytes.NewReader(data)), DecodeLimits{})
				if err != nil || !reflect.DeepEqual(got, want) {
					errs <- fmt.Errorf("got %v %+v", err, got) //nolint:errorlint // err may be nil here
					return
				}
			}
			errs <- nil
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
