package pargzip

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// sample is exposition-like text (compressible) with stretches of random
// bytes (not), so segments see both stored and Huffman-coded blocks.
func sample(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	var b bytes.Buffer
	for b.Len() < n {
		if r.IntN(50) == 0 {
			for range r.IntN(4096) {
				b.WriteByte(byte(r.Uint32()))
			}
			continue
		}
		fmt.Fprintf(&b, "rabbitmq_individual_queue_messages{host=\"rabbit-%d\",name=\"q-%d\",vhost=\"/\"} %d\n", r.IntN(3), r.IntN(1e6), r.IntN(100))
	}
	return b.Bytes()[:n]
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	zr.Multistream(false)
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gzip stream does not decompress (checksum and length are checked): %v", err)
	}
	if rest, _ := io.ReadAll(zr); len(rest) != 0 {
		t.Fatalf("%d bytes after the gzip member", len(rest))
	}
	return out
}

// countingWriter records each Write, to see how the stream reaches dst.
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes++
	return c.Buffer.Write(p)
}

func TestRoundTripIsExact(t *testing.T) {
	for _, n := range []int{0, 1, 100, SegmentSize - 1, SegmentSize, SegmentSize + 1, 2 * SegmentSize, 7*SegmentSize/2 + 12345} {
		for _, chunk := range []int{1 << 30, 512 << 10, 4093} {
			if n > 2*SegmentSize && chunk < 1<<20 && testing.Short() {
				continue
			}
			t.Run(fmt.Sprintf("%d bytes in writes of %d", n, min(n, chunk)), func(t *testing.T) {
				in := sample(n, uint64(n))
				var out countingWriter
				w := testPool.NewWriter(&out)
				for p := in; len(p) > 0; {
					k := min(len(p), chunk)
					if m, err := w.Write(p[:k]); m != k || err != nil {
						t.Fatalf("Write = %d, %v", m, err)
					}
					p = p[k:]
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				if got := gunzip(t, out.Bytes()); !bytes.Equal(got, in) {
					t.Fatalf("decompressed %d bytes differ from the %d written", len(got), len(in))
				}
				segs := max(1, (n+SegmentSize-1)/SegmentSize)
				if n > 0 && n%SegmentSize == 0 {
					segs++ // the last segment is empty: Close found nothing left
				}
				if wantWrites := segs + min(segs-1, 1); out.writes != wantWrites {
					t.Errorf("%d writes to dst, want %d (one per segment, plus the trailer when there were several)", out.writes, wantWrites)
				}
			})
		}
	}
}

func TestOutputIsAsSmallAsOneCompressor(t *testing.T) {
	in := sample(6*SegmentSize, 7)
	var par bytes.Buffer
	writeAll(t, testPool.NewWriter(&par), in)
	var one bytes.Buffer
	zw, err := gzip.NewWriterLevel(&one, gzip.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, zw, in)
	// Independent segments lose the matches across segment borders; stdlib
	// BestSpeed is the reference a scraper would otherwise get.
	if float64(par.Len()) > 1.05*float64(one.Len()) {
		t.Errorf("segmented output %d bytes, more than 5%% above stdlib BestSpeed's %d", par.Len(), one.Len())
	}
}

// failingWriter fails every write after the first n bytes.
type failingWriter struct {
	n       int
	written int
}

var errGone = errors.New("scraper went away")

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.written+len(p) > f.n {
		return 0, errGone
	}
	f.written += len(p)
	return len(p), nil
}

func TestWriteErrorStopsTheStream(t *testing.T) {
	before := runtime.NumGoroutine()
	in := sample(SegmentSize, 3)
	dst := &failingWriter{n: 1000}
	w := testPool.NewWriter(dst)
	var err error
	// The error surfaces once the sender met it, within a few segments.
	for i := 0; i < 50 && err == nil; i++ {
		_, err = w.Write(in)
	}
	if !errors.Is(err, errGone) {
		t.Fatalf("Write kept succeeding after dst failed: %v", err)
	}
	if err := w.Close(); !errors.Is(err, errGone) {
		t.Fatalf("Close = %v, want the write error", err)
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Fatal("Write after Close succeeded")
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left running (%d before)", runtime.NumGoroutine(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSmallStreamFailsAtClose(t *testing.T) {
	w := testPool.NewWriter(&failingWriter{n: 0})
	if _, err := w.Write([]byte("small")); err != nil {
		t.Fatalf("a stream within one segment writes nothing before Close: %v", err)
	}
	if err := w.Close(); !errors.Is(err, errGone) {
		t.Fatalf("Close = %v, want the write error", err)
	}
}

// TestConcurrentStreams shares the pools between streams (run with -race).
func TestConcurrentStreams(t *testing.T) {
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			in := sample(SegmentSize*5/2+i, uint64(i))
			var out bytes.Buffer
			w := testPool.NewWriter(&out)
			for p := in; len(p) > 0; {
				k := min(len(p), 300_000)
				if _, err := w.Write(p[:k]); err != nil {
					t.Error(err)
					return
				}
				p = p[k:]
			}
			if err := w.Close(); err != nil {
				t.Error(err)
				return
			}
			zr, err := gzip.NewReader(&out)
			if err != nil {
				t.Error(err)
				return
			}
			got, err := io.ReadAll(zr)
			if err != nil || !bytes.Equal(got, in) {
				t.Errorf("stream %d: %v, %d bytes back of %d", i, err, len(got), len(in))
			}
		})
	}
	wg.Wait()
}

func TestHeaderIsPlainGzip(t *testing.T) {
	var out bytes.Buffer
	writeAll(t, testPool.NewWriter(&out), []byte(strings.Repeat("a", 10)))
	zr, err := gzip.NewReader(&out)
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || zr.Comment != "" || len(zr.Extra) != 0 || !zr.ModTime.IsZero() {
		t.Errorf("header carries data: %+v", zr.Header)
	}
}

// testPool serves the tests' streams, as one Pool serves a process.
var testPool = NewPool()

// writeAll writes p in one call and closes w, failing the test on an error.
func writeAll(t *testing.T, w io.WriteCloser, p []byte) {
	t.Helper()
	if _, err := w.Write(p); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}
