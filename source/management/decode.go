// Package management talks to the RabbitMQ management HTTP API.
package management

import (
	"fmt"
	"io"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
)

// Queue is one element of the listing. Vhost and Name alias the decoder's buffers and are valid only
// during the callback; Counts (indexed like queue.Fields) are meaningful only where Has says so.
type Queue struct {
	Vhost, Name []byte
	Counts      queue.Counts
	Has         queue.Presence
}

// DecodeLimits bounds the work and memory spent on one listing.
type DecodeLimits struct {
	// MaxStringBytes is the longest string value or key accepted, decoded or skipped (default
	// 64 KiB when 0). It counts input bytes between the quotes, not decoded bytes, so that the
	// decoder never reads more than this far into an oversized string; skipped number literals
	// are held to the same length.
	MaxStringBytes int
	// MaxDepth is the nesting limit for arrays and objects (default 64 when 0). It counts the
	// top-level value as 1, like encoding/json's own limit of 10000: the listing itself takes 2
	// levels (3 when paginated) and the rest is left for skipped values.
	MaxDepth int
}

const (
	defaultMaxStringBytes = 64 << 10
	defaultMaxDepth       = 64
	readBufferSize        = 64 << 10
)

// DecodeQueues reads the /api/queues body from r and calls fn once per queue object in order.
// It returns fn's error unchanged if fn fails, and a descriptive error (one line) on malformed input.
//
// The body is a JSON array of queue objects, or a paginated object whose "items" key holds that
// array (other keys are skipped). "items" must occur exactly once: queues already handed to fn
// could not be taken back if a later duplicate won. A paginated object must also hold the whole
// listing: its "page_count" must not exceed 1, and its "item_count", "filtered_count" and
// "total_count" must equal the number of items; each of these keys is optional, may occur at most
// once, and must be a non-negative integer that fits int64.
//
// Input is well-formed exactly when encoding/json.Valid says so (within lim), and strings are
// unescaped as encoding/json does, including U+FFFD for invalid UTF-8 and lone surrogates. Queue
// keys (queue.Fields' Management keys, "name" and "vhost") match exactly, not
// case-insensitively as encoding/json's struct fields do; the last of duplicate keys wins. Each
// occurrence of "name" and "vhost" must be a string. Each occurrence of a count must be null (the
// count is then absent) or an integer that fits int64, as encoding/json requires for an int64 (so
// 3.0 and 1e2 are rejected), and must not be negative (-0 included).
//
// Because decoding streams, fn may already have been called for earlier queues when an error is
// returned, even for a paginated object found incomplete only after its items; callers must
// discard what they collected in that case.
func DecodeQueues(r io.Reader, lim DecodeLimits, fn func(*Queue) error) error {
	return decodeQueues(r, lim, brokerKeys, fn, nil)
}

// DecodeQueuesOf is DecodeQueues for the fields fs: Counts are numbered as
// in fs, and a Float field may be any JSON number (kept as float64 bits).
func DecodeQueuesOf(r io.Reader, lim DecodeLimits, fs queue.FieldSet, fn func(*Queue) error) error {
	return decodeQueues(r, lim, keysOf(fs), fn, nil)
}

// decodeStats counts the queues decoded, and those the fast path left to the general one.
type decodeStats struct {
	queues, slow int
}

// decodeQueues is DecodeQueues for the key table keys; it fills stats when not nil.
func decodeQueues(r io.Reader, lim DecodeLimits, keys *queueKeys, fn func(*Queue) error, stats *decodeStats) error {
	d := decoderPool.Get().(*decoder)
	*d = decoder{r: r, maxStr: lim.MaxStringBytes, maxDepth: lim.MaxDepth, keys: keys, fn: fn,
		buf: d.buf, key: d.key[:0], name: d.name[:0], vhost: d.vhost[:0]}
	if d.maxStr <= 0 {
		d.maxStr = defaultMaxStringBytes
	}
	if d.maxDepth <= 0 {
		d.maxDepth = defaultMaxDepth
	}
	err := d.run()
	if stats != nil {
		*stats = d.stats
	}
	d.release()
	return err
}

// decoderPool recycles the 64 KiB window: a scrape every few seconds per target would otherwise
// allocate (and zero) it each time.
var decoderPool = sync.Pool{New: func() any {
	d := new(decoder)
	d.buf = make([]byte, readBufferSize)
	return d
}}

// release returns d to the pool, dropping references to the caller's reader and callback and any
// scratch space that an unusually long string inflated.
func (d *decoder) release() {
	const keep = 4 << 10
	for _, b := range []*[]byte{&d.key, &d.name, &d.vhost} {
		if cap(*b) > keep {
			*b = nil
		}
	}
	d.r, d.fn, d.rerr, d.q = nil, nil, nil, Queue{}
	decoderPool.Put(d)
}

// decoder is a recursive-descent scanner over a refilled window of the input. Tokens are never
// required to be contiguous in the window (strings and numbers are consumed piecewise), so the
// window stays fixed-size; only short look-aheads (escapes, UTF-8 sequences) compact it.
type decoder struct {
	r        io.Reader
	buf      []byte
	pos, end int   // unread input is buf[pos:end]
	base     int64 // input offset of buf[0]
	eof      bool
	rerr     error // read error other than io.EOF, reported once the window runs dry

	maxStr, maxDepth int
	depth            int

	keys                *queueKeys
	fn                  func(*Queue) error
	q                   Queue
	haveName, haveVhost bool // in the queue object being decoded by the general path
	page                page // the paginated object, if the listing is one
	stats               decodeStats
	key                 []byte // scratch for keys that need unescaping or span a refill
	name, vhost         []byte
}

func (d *decoder) offset() int64 { return d.base + int64(d.pos) }

// more compacts the window and reads at least one byte into it; false means no more input
// (d.eof or d.rerr says why).
func (d *decoder) more() bool {
	if d.eof || d.rerr != nil {
		return false
	}
	if d.pos > 0 {
		d.end = copy(d.buf, d.buf[d.pos:d.end])
		d.base += int64(d.pos)
		d.pos = 0
	}
	// A reader that keeps returning 0, nil would otherwise spin forever.
	for range 100 {
		n, err := d.r.Read(d.buf[d.end:])
		d.end += n
		if err != nil {
			if err == io.EOF {
				d.eof = true
			} else {
				d.rerr = err
			}
			return n > 0
		}
		if n > 0 {
			return true
		}
	}
	d.rerr = io.ErrNoProgress
	return false
}

// ensure tries to make n bytes available at d.pos; fewer are available only at end of input.
func (d *decoder) ensure(n int) {
	for d.end-d.pos < n {
		if !d.more() {
			return
		}
	}
}

// endErr reports running out of input while inside a value.
func (d *decoder) endErr(where string) error {
	if d.rerr != nil {
		return fmt.Errorf("reading queue listing at offset %d: %w", d.offset(), d.rerr)
	}
	return fmt.Errorf("truncated JSON: unexpected end of input %s at offset %d", where, d.offset())
}

func (d *decoder) syntaxErr(format string, args ...any) error {
	return fmt.Errorf("invalid JSON at offset %d: %s", d.offset(), fmt.Sprintf(format, args...))
}

// describe names the value starting with c, for shape errors.
func describe(c byte) string {
	switch {
	case c == '"':
		return "a string"
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	case c == '-' || c >= '0' && c <= '9':
		return "a number"
	}
	return "invalid character " + quoteByte(c)
}

// quoteByte prints c readably on one line, without pretending a lone non-ASCII byte is a rune.
func quoteByte(c byte) string {
	if c < utf8.RuneSelf {
		return strconv.QuoteRune(rune(c))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}

// tok returns the next byte if buffered, else 0. Hot loops call it and fall back to nonWS only
// for whitespace or an empty window: the broker sends no whitespace, and a function that may call
// another is too costly for the inliner.
func (d *decoder) tok() byte {
	if d.pos < d.end {
		return d.buf[d.pos]
	}
	return 0
}

// nonWS skips whitespace and returns the next byte without consuming it.
func (d *decoder) nonWS(where string) (byte, error) {
	if c := d.tok(); c > ' ' {
		return c, nil
	}
	return d.nonWSSlow(where)
}

func (d *decoder) nonWSSlow(where string) (byte, error) {
	for {
		for d.pos < d.end {
			c := d.buf[d.pos]
			if c > ' ' || (c != ' ' && c != '\n' && c != '\t' && c != '\r') {
				return c, nil
			}
			d.pos++
		}
		if !d.more() {
			return 0, d.endErr(where)
		}
	}
}

func (d *decoder) push() error {
	d.depth++
	if d.depth > d.maxDepth {
		return fmt.Errorf("JSON nested deeper than %d levels at offset %d", d.maxDepth, d.offset()-1)
	}
	return nil
}

func (d *decoder) run() error {
	c, err := d.nonWS("looking for the top-level value")
	if err != nil {
		return err
	}
	d.pos++
	switch c {
	case '[':
		err = d.container(queueArray)
	case '{':
		err = d.container(pagedObject)
	default:
		d.pos--
		return d.syntaxErr("expected a JSON array or object of queues, found %s", describe(c))
	}
	if err != nil {
		return err
	}
	// encoding/json rejects anything but whitespace after the value; so do we.
	for {
		for d.pos < d.end {
			switch d.buf[d.pos] {
			case ' ', '\n', '\t', '\r':
				d.pos++
			default:
				return d.syntaxErr("trailing data after top-level value: %s", quoteByte(d.buf[d.pos]))
			}
		}
		if !d.more() {
			if d.rerr != nil {
				return d.endErr("")
			}
			return nil
		}
	}
}

// kind says what an array or object is to the decoder, and so what container does with its
// elements or members.
type kind uint8

const (
	skippedArray  kind = iota // any array in a skipped value
	skippedObject             // any object in a skipped value
	queueArray                // the listing's array of queue objects
	queueObject               // a queue object that fastQueue left to the general path
	pagedObject               // the paginated object around the queue array
)

var kinds = [...]struct {
	closing     byte
	where, what string // for errors: inside what, and after what
}{
	skippedArray:  {']', "in array", "array element"},
	skippedObject: {'}', "in object", "object value"},
	queueArray:    {']', "in queue array", "array element"},
	queueObject:   {'}', "in queue object", "object value"},
	pagedObject:   {'}', "in object", "object value"},
}

// container decodes the array or object of kind k after its opening bracket. It is the one loop
// over JSON containers; element, member, queueDone and pageDone do what differs by kind.
func (d *decoder) container(k kind) error {
	if err := d.push(); err != nil {
		return err
	}
	start := d.offset() - 1
	info := &kinds[k]
	switch k {
	case queueObject:
		d.q, d.haveName, d.haveVhost = Queue{}, false, false
	case pagedObject:
		d.page = page{}
	}
	c, err := d.nonWS(info.where)
	if err != nil {
		return err
	}
	if c != info.closing {
		for {
			switch {
			case k == queueArray && c == '{':
				// The hot case, inline: a queue, most often taking the fast path.
				d.pos++
				d.stats.queues++
				var ok bool
				if ok, err = d.fastQueue(); !ok && err == nil {
					d.stats.slow++
					err = d.container(queueObject)
				}
			case info.closing == ']':
				err = d.element(k, c)
			default:
				err = d.member(k, c)
			}
			if err != nil {
				return err
			}
			var done bool
			if c, done, err = d.nextElement(info.closing, info.where, info.what); err != nil {
				return err
			}
			if done {
				break
			}
		}
	}
	d.pos++
	d.depth--
	switch k {
	case queueObject:
		return d.queueDone(start)
	case pagedObject:
		return d.pageDone(start)
	}
	return nil
}

// element decodes an array element of kind k starting with c (unconsumed), except a queue
// object, which container decodes itself.
func (d *decoder) element(k kind, c byte) error {
	if k == skippedArray {
		return d.skipValue(c)
	}
	if c == ']' {
		return d.syntaxErr("invalid character ']' after ','")
	}
	return fmt.Errorf("queue listing element at offset %d is not an object: found %s", d.offset(), describe(c))
}

// member decodes an object member of kind k whose key starts with c (unconsumed).
func (d *decoder) member(k kind, c byte) error {
	if c != '"' {
		return d.syntaxErr("expected string key in object, found %s", quoteByte(c))
	}
	d.pos++
	field := fieldOther
	switch k {
	case skippedObject:
		if err := d.skipString(); err != nil {
			return err
		}
	case queueObject:
		key, err := d.readKey()
		if err != nil {
			return err
		}
		field = d.keys.field(key) // before reading on: key may alias the window
	case pagedObject:
		key, err := d.readKey()
		if err != nil {
			return err
		}
		field = pageField(key)
	}
	c = d.colonTok()
	if c == 0 {
		var err error
		if c, err = d.valueSlow(); err != nil {
			return err
		}
	}
	switch {
	case field == fieldOther:
		return d.skipValue(c)
	case k == pagedObject:
		return d.pageMember(field, c)
	case field == fieldName || field == fieldVhost:
		return d.identity(field, c)
	}
	return d.readCount(c, field)
}

// identity reads the name or vhost of a queue object on the general path.
func (d *decoder) identity(field int, c byte) error {
	if c != '"' {
		return fmt.Errorf("queue field %q at offset %d must be a string, found %s", d.keys.name(field), d.offset(), describe(c))
	}
	d.pos++
	var err error
	if field == fieldName {
		d.name, err = d.readString(d.name[:0], true)
		d.haveName = true
	} else {
		d.vhost, err = d.readString(d.vhost[:0], true)
		d.haveVhost = true
	}
	return err
}

// queueDone hands the queue object that began at start to fn.
func (d *decoder) queueDone(start int64) error {
	if !d.haveName {
		return fmt.Errorf(`queue object at offset %d has no "name"`, start)
	}
	if !d.haveVhost {
		return fmt.Errorf(`queue object at offset %d has no "vhost"`, start)
	}
	q := &d.q
	q.Name, q.Vhost = d.name, d.vhost
	return d.fn(q)
}

// colonTok consumes the ':' after a key and returns the value's first byte when both are
// buffered without whitespace between; otherwise it consumes nothing and returns 0.
func (d *decoder) colonTok() byte {
	if p := d.pos + 1; p < d.end && d.buf[p-1] == ':' && d.buf[p] > ' ' {
		d.pos = p
		return d.buf[p]
	}
	return 0
}

// valueSlow consumes the ':' after a key and returns the first byte of the value, unconsumed.
func (d *decoder) valueSlow() (byte, error) {
	c, err := d.nonWS("after object key")
	if err != nil {
		return 0, err
	}
	if c != ':' {
		return 0, d.syntaxErr("invalid character %s after object key", quoteByte(c))
	}
	d.pos++
	return d.nonWS("looking for value")
}

// nextElement reads what follows an object member or array element: the
// closing byte ends the container (done, not consumed), a comma is consumed
// and the next element's first byte returned.
func (d *decoder) nextElement(closing byte, where, what string) (c byte, done bool, err error) {
	if c = d.tok(); c <= ' ' {
		if c, err = d.nonWSSlow(where); err != nil {
			return 0, false, err
		}
	}
	if c == closing {
		return c, true, nil
	}
	if c != ',' {
		return 0, false, d.syntaxErr("invalid character %s after "+what, quoteByte(c))
	}
	d.pos++
	if c = d.tok(); c <= ' ' {
		if c, err = d.nonWSSlow(where); err != nil {
			return 0, false, err
		}
	}
	return c, false, nil
}

// skipValue validates and discards the value starting with c (unconsumed).
func (d *decoder) skipValue(c byte) error {
	switch {
	case c == '"':
		d.pos++
		return d.skipString()
	case c == '{':
		d.pos++
		return d.container(skippedObject)
	case c == '[':
		d.pos++
		return d.container(skippedArray)
	case c == 't':
		return d.literal("true")
	case c == 'f':
		return d.literal("false")
	case c == 'n':
		return d.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		return d.skipNumber()
	}
	return d.syntaxErr("invalid character %s looking for beginning of value", quoteByte(c))
}
