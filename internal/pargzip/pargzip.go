// Package pargzip writes a gzip stream whose compression runs on several
// cores, overlapping with whatever produces the data.
//
// A scrape answer of 100k queues is 35 MB of text. Compressing it at
// klauspost/compress BestSpeed takes about 75 ms of CPU, three times what
// decoding the listing and formatting the answer take together, so a gzip
// scrape is mostly compression. Writer cuts the stream into segments of
// SegmentSize bytes and compresses them concurrently, each with a fresh
// compressor that ends on a byte boundary (a sync flush), then sends them in
// order: their concatenation is one valid deflate stream, so the result is a
// single ordinary gzip member any reader accepts. Segments do not share a
// dictionary, which makes the output about 1.5% larger than one compressor's
// at 256 KiB; the CPU time is the same.
package pargzip

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/flate"
)

// SegmentSize is the uncompressed size of a segment. Larger segments lose
// less to the missing dictionary (1 MiB: 0.4%, 512 KiB: 0.8%), smaller ones
// hold less memory: a stream holds workers+1 segments, and 8 concurrent
// 100k-queue gzip scrapes peaked about 5 MB lower in RSS at 256 KiB than at
// 512 KiB, for the same CPU time. Answers up to this size are compressed in
// the calling goroutine, without any other.
const SegmentSize = 256 << 10

// maxWorkers caps concurrent compressions per stream: beyond a few cores,
// several scrapes at once are the better use of them.
const maxWorkers = 4

// Pool is what the gzip streams of a process share. compressing holds one
// token per compression running: more compressions than cores at once cannot
// go faster and only hold more compressors (0.5 MB each), so concurrent
// streams share the cores. Segments (256 KiB each) and compressors are reused
// across streams: allocating them per scrape would cost the GC megabytes a
// scrape.
type Pool struct {
	compressing chan struct{}
	segments    sync.Pool
	compressors sync.Pool
}

// NewPool returns a Pool for the streams of one process (one serves all).
func NewPool() *Pool {
	p := &Pool{compressing: make(chan struct{}, runtime.GOMAXPROCS(0))}
	p.segments.New = func() any {
		return &segment{in: make([]byte, 0, SegmentSize), done: make(chan struct{}, 1)}
	}
	return p
}

// gzip header: magic, deflate, no flags, no modification time, XFL 4
// (fastest compression), OS unknown.
var header = [10]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255}

// errClosed is returned by Write after Close.
var errClosed = errors.New("pargzip: write after close")

// segment is one piece of the stream: its input and, once done receives,
// its compressed form.
type segment struct {
	in   []byte
	out  []byte
	done chan struct{} // one token per use: the compressed form is ready
}

// Writer compresses what is written to it and writes gzip to its
// destination. Close must be called, also after an error: it waits for the
// goroutines the stream started. A Writer is not safe for concurrent use.
type Writer struct {
	pool    *Pool
	dst     io.Writer
	cur     *segment
	crc     uint32
	size    uint32 // input length modulo 2^32, as gzip records it
	started bool   // segments are being sent by the sender goroutine
	closed  bool

	queue chan *segment // segments in stream order, for the sender
	sent  chan struct{} // closed when the sender is done

	mu  sync.Mutex
	err error // the first error writing to dst
}

// NewWriter returns a Writer that compresses at BestSpeed to dst.
func (p *Pool) NewWriter(dst io.Writer) *Writer {
	return &Writer{pool: p, dst: dst}
}

// Write copies p into the current segment, handing each full segment to a
// compressing goroutine. It blocks while the segments already handed on are
// all still being compressed or sent, which bounds the memory a stream holds.
func (w *Writer) Write(p []byte) (int, error) {
	if w.closed {
		return 0, errClosed
	}
	if err := w.failed(); err != nil {
		return 0, err
	}
	n := len(p)
	for len(p) > 0 {
		if w.cur == nil {
			w.cur = w.pool.segments.Get().(*segment)
		}
		k := copy(w.cur.in[len(w.cur.in):SegmentSize], p)
		w.cur.in = w.cur.in[:len(w.cur.in)+k]
		p = p[k:]
		if len(w.cur.in) == SegmentSize {
			w.dispatch(w.cur, false)
			w.cur = nil
			if err := w.failed(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

// Close compresses what is left, waits until everything is written and
// writes the gzip trailer. It returns the first error writing to dst.
func (w *Writer) Close() error {
	if w.closed {
		return w.failed()
	}
	w.closed = true
	last := w.cur
	w.cur = nil
	if last == nil {
		last = w.pool.segments.Get().(*segment)
	}
	if !w.started {
		// The whole stream is one segment: no goroutine, one write.
		w.sum(last)
		last.compress(w.pool, true, true)
		last.out = w.appendTrailer(last.out)
		_, err := w.dst.Write(last.out)
		w.pool.release(last)
		return err
	}
	w.dispatch(last, true)
	close(w.queue)
	<-w.sent
	if err := w.failed(); err != nil {
		return err
	}
	_, err := w.dst.Write(w.appendTrailer(nil))
	return err
}

// dispatch queues s for sending and starts its compression.
func (w *Writer) dispatch(s *segment, last bool) {
	w.sum(s)
	first := !w.started
	if first {
		workers := min(runtime.GOMAXPROCS(0), maxWorkers)
		// The sender holds one segment and the queue the others being
		// compressed; with the one being filled that is workers+1 segments.
		w.queue = make(chan *segment, max(1, workers-1))
		w.sent = make(chan struct{})
		w.started = true
		go w.send()
	}
	w.queue <- s
	go func() {
		w.pool.compressing <- struct{}{}
		s.compress(w.pool, first, last)
		<-w.pool.compressing
		s.done <- struct{}{}
	}()
}

// send writes the segments to dst in stream order as each is compressed.
// After a failed write it only waits for and releases the rest.
func (w *Writer) send() {
	defer close(w.sent)
	for s := range w.queue {
		<-s.done
		if w.failed() == nil {
			if _, err := w.dst.Write(s.out); err != nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
			}
		}
		w.pool.release(s)
	}
}

func (w *Writer) failed() error {
	if !w.started {
		return nil // no other goroutine yet
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// sum adds s to the checksum and length of the stream, in stream order.
func (w *Writer) sum(s *segment) {
	w.crc = crc32.Update(w.crc, crc32.IEEETable, s.in)
	w.size += uint32(len(s.in))
}

func (w *Writer) appendTrailer(b []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, w.crc)
	return binary.LittleEndian.AppendUint32(b, w.size)
}

// compress sets s.out to the deflate form of s.in, after the gzip header for
// the first segment. A segment that is not the last ends with a sync flush:
// a non-final empty stored block that leaves the output byte-aligned, so the
// next segment's blocks can follow directly.
func (s *segment) compress(p *Pool, first, last bool) {
	s.out = s.out[:0]
	if first {
		s.out = append(s.out, header[:]...)
	}
	c, _ := p.compressors.Get().(*flate.Writer)
	if c == nil {
		// BestSpeed is a valid level, so NewWriter cannot fail.
		c, _ = flate.NewWriter(nil, flate.BestSpeed)
	}
	out := appender{&s.out}
	c.Reset(out)
	// Writes to an appender cannot fail, so neither can the compressor.
	_, _ = c.Write(s.in)
	if last {
		_ = c.Close()
	} else {
		_ = c.Flush()
	}
	c.Reset(io.Discard) // keep no reference to the segment
	p.compressors.Put(c)
}

func (p *Pool) release(s *segment) {
	s.in = s.in[:0]
	if cap(s.out) > 2*SegmentSize {
		s.out = nil // an unusually incompressible segment: do not keep its buffer
	}
	s.out = s.out[:0]
	p.segments.Put(s)
}

// appender is an io.Writer appending to a byte slice.
type appender struct{ b *[]byte }

func (a appender) Write(p []byte) (int, error) {
	*a.b = append(*a.b, p...)
	return len(p), nil
}
