package management

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// FuzzDecodeQueues checks DecodeQueues against referenceDecode, which states the accepted
// language with encoding/json alone: each accepts exactly what the other accepts, with the same
// queues, whatever the read sizes. It checks the same for another key table, whose counts sort
// before, between and after "name" and "vhost", so that fastQueue's walk of the sorted keys is
// fuzzed beyond today's layout. Each new coverage find is minimized for up to -fuzzminimizetime
// (60s by default), during which the exec count stands still; passing -fuzzminimizetime=5s keeps
// a short run fuzzing.
func FuzzDecodeQueues(f *testing.F) {
	for _, data := range testdataFiles(f) {
		f.Add(data)
	}
	for _, tc := range edgeCases {
		f.Add([]byte(tc.in))
	}
	if b, err := os.ReadFile(filepath.Join("..", "plugin", "testdata", "cluster-3.10.8-queues.json")); err == nil {
		f.Add(b) // a real listing with odd queue names
	}
	altCounts := []string{"zz", "messages_ready", "o"}
	alt := newQueueKeys(altCounts)
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDifferential(t, data, brokerKeys, managementKeys())
		checkDifferential(t, data, alt, altCounts)
	})
}

// checkDifferential compares decoding data with the key table keys (made from counts) with the
// reference.
func checkDifferential(t *testing.T, data []byte, keys *queueKeys, counts []string) {
	// Limits that cannot bite before encoding/json's own: no token is longer than the
	// input, and encoding/json also stops at 10000 levels.
	lim := DecodeLimits{MaxStringBytes: len(data) + 1, MaxDepth: 10000}
	got, err := decodeWith(bytes.NewReader(data), lim, keys, nil)
	want, refErr := referenceDecodeKeys(data, counts)
	switch {
	case err != nil && refErr == nil:
		t.Fatalf("%q: DecodeQueues rejects what encoding/json accepts: %v\nreference: %#v", counts, err, want)
	case err == nil && refErr != nil:
		t.Fatalf("%q: DecodeQueues accepts what encoding/json rejects (%v): %#v", counts, refErr, got)
	case err == nil && !sameQueues(got, want):
		t.Fatalf("%q: queues differ:\n got %#v\nwant %#v", counts, got, want)
	case err != nil && strings.ContainsAny(err.Error(), "\r\n"):
		t.Fatalf("error is not one line: %q", err)
	}

	slow, slowErr := decodeWith(iotest.OneByteReader(bytes.NewReader(data)), lim, keys, nil)
	if !sameQueues(slow, got) || (slowErr == nil) != (err == nil) || err != nil && slowErr.Error() != err.Error() {
		t.Fatalf("%q: one byte reads differ: %v %#v\nwhole: %v %#v", counts, slowErr, slow, err, got)
	}

	// The default limits may only turn success into a limit error.
	def, defErr := decodeWith(bytes.NewReader(data), DecodeLimits{}, keys, nil)
	switch {
	case defErr == nil && (err != nil || !sameQueues(def, got)):
		t.Fatalf("%q: default limits accept differently: %#v, with generous limits: %v", counts, def, err)
	case defErr != nil && err == nil && !strings.Contains(defErr.Error(), "longer than") && !strings.Contains(defErr.Error(), "nested deeper"):
		t.Fatalf("%q: default limits fail with a non-limit error: %v", counts, defErr)
	}
}

func sameQueues(a, b []testQueue) bool {
	return len(a) == 0 && len(b) == 0 || reflect.DeepEqual(a, b)
}
