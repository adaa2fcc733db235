package management

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// FuzzDecodeQueues checks DecodeQueues against referenceDecode, which states the accepted
// language with encoding/json alone: each accepts exactly what the other accepts, with the same
// queues, whatever the read sizes. Each new coverage find is minimized for up to
// -fuzzminimizetime (60s by default), during which the exec count stands still; passing
// -fuzzminimizetime=5s keeps a short run fuzzing.
func FuzzDecodeQueues(f *testing.F) {
	for _, data := range testdataFiles(f) {
		f.Add(data)
	}
	for _, tc := range edgeCases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(checkDifferential)
}

func checkDifferential(t *testing.T, data []byte) {
	// Limits that cannot bite before encoding/json's own: no token is longer than the
	// input, and encoding/json also stops at 10000 levels.
	lim := DecodeLimits{MaxStringBytes: len(data) + 1, MaxDepth: 10000}
	got, err := decodeAll(bytes.NewReader(data), lim)
	want, refErr := referenceDecode(data)
	switch {
	case err != nil && refErr == nil:
		t.Fatalf("DecodeQueues rejects what encoding/json accepts: %v\nreference: %#v", err, want)
	case err == nil && refErr != nil:
		t.Fatalf("DecodeQueues accepts what encoding/json rejects (%v): %#v", refErr, got)
	case err == nil && !sameQueues(got, want):
		t.Fatalf("queues differ:\n got %#v\nwant %#v", got, want)
	case err != nil && strings.ContainsAny(err.Error(), "\r\n"):
		t.Fatalf("error is not one line: %q", err)
	}

	slow, slowErr := decodeAll(iotest.OneByteReader(bytes.NewReader(data)), lim)
	if !sameQueues(slow, got) || (slowErr == nil) != (err == nil) || err != nil && slowErr.Error() != err.Error() {
		t.Fatalf("one byte reads differ: %v %#v\nwhole: %v %#v", slowErr, slow, err, got)
	}

	// The default limits may only turn success into a limit error.
	def, defErr := decodeAll(bytes.NewReader(data), DecodeLimits{})
	switch {
	case defErr == nil && (err != nil || !sameQueues(def, got)):
		t.Fatalf("default limits accept differently: %#v, with generous limits: %v", def, err)
	case defErr != nil && err == nil && !strings.Contains(defErr.Error(), "longer than") && !strings.Contains(defErr.Error(), "nested deeper"):
		t.Fatalf("default limits fail with a non-limit error: %v", defErr)
	}
}

func sameQueues(a, b []testQueue) bool {
	return len(a) == 0 && len(b) == 0 || reflect.DeepEqual(a, b)
}
