// Package management talks to the RabbitMQ management HTTP API.
package management

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/bits"
	"strconv"
	"sync"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/collector"
)

// Queue is one element of the listing. Vhost and Name alias the decoder's buffers and are valid only
// during the callback; Counts (indexed like collector.Fields) are meaningful only where Has says so.
type Queue struct {
	Vhost, Name []byte
	Counts      collector.Counts
	Has         collector.Presence
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
// could not be taken back if a later duplicate won.
//
// Input is well-formed exactly when encoding/json.Valid says so (within lim), and strings are
// unescaped as encoding/json does, including U+FFFD for invalid UTF-8 and lone surrogates. Queue
// keys match exactly, not case-insensitively as encoding/json's struct fields do; the last of
// duplicate keys wins. Each occurrence of "name" and "vhost" must be a string. Each occurrence
// of "messages", "messages_ready" and "messages_unacknowledged" must be null (the count is then
// absent) or an integer that fits int64, as encoding/json requires for an int64 (so 3.0 and 1e2
// are rejected), and must not be negative (-0 included).
//
// Because decoding streams, fn may already have been called for earlier queues when an error is
// returned; callers must discard what they collected in that case.
func DecodeQueues(r io.Reader, lim DecodeLimits, fn func(*Queue) error) error {
	d := decoderPool.Get().(*decoder)
	*d = decoder{r: r, maxStr: lim.MaxStringBytes, maxDepth: lim.MaxDepth, fn: fn,
		buf: d.buf, key: d.key[:0], name: d.name[:0], vhost: d.vhost[:0]}
	if d.maxStr <= 0 {
		d.maxStr = defaultMaxStringBytes
	}
	if d.maxDepth <= 0 {
		d.maxDepth = defaultMaxDepth
	}
	err := d.run()
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

	fn          func(*Queue) error
	q           Queue
	key         []byte // scratch for keys that need unescaping or span a refill
	name, vhost []byte
}

// strPlain marks bytes that a decoded string copies verbatim; skipPlain marks bytes a skipped
// string may contain without further checks (UTF-8 validity does not affect JSON validity).
var strPlain, skipPlain [256]bool

func init() {
	for c := 0x20; c < 256; c++ {
		if c != '"' && c != '\\' {
			skipPlain[c] = true
			strPlain[c] = c < utf8.RuneSelf
		}
	}
}

// SWAR constants: one in every byte, and every byte's top bit.
const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// stopBytes flags (top bit of each byte) the bytes of x, taken as 8 string bytes, that a string
// scan must stop at: '"', '\\', control characters and, when ascii is set, bytes >= 0x80. The
// classic zero-byte tests can also flag bytes above a real hit (borrows), never below it, so
// the lowest flag is exact.
func stopBytes(x uint64, ascii bool) uint64 {
	q := x ^ (lsb * '"')
	b := x ^ (lsb * '\\')
	m := (q-lsb)&^q | (b-lsb)&^b | (x-lsb*0x20)&^x
	if ascii {
		m |= x
	}
	return m & msb
}

// scanPlain returns the length of b's prefix that a decoded string copies verbatim.
func scanPlain(b []byte) int {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		if m := stopBytes(binary.LittleEndian.Uint64(b[i:]), true); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for i < len(b) && strPlain[b[i]] {
		i++
	}
	return i
}

// scanSkip returns the length of b's prefix that a skipped string passes over unchecked.
func scanSkip(b []byte) int {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		if m := stopBytes(binary.LittleEndian.Uint64(b[i:]), false); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for i < len(b) && skipPlain[b[i]] {
		i++
	}
	return i
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
	for d.end-d.pos < n && d.more() {
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
		err = d.queueArray()
	case '{':
		err = d.pagedObject()
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

// pagedObject handles {"items":[...],...} after its '{'.
func (d *decoder) pagedObject() error {
	if err := d.push(); err != nil {
		return err
	}
	start := d.offset() - 1
	seen := false
	c, err := d.nonWS("in object")
	if err != nil {
		return err
	}
	if c != '}' {
		for {
			if c != '"' {
				return d.syntaxErr("expected string key in object, found %s", quoteByte(c))
			}
			d.pos++
			key, err := d.readKey()
			if err != nil {
				return err
			}
			isItems := string(key) == "items"
			if c = d.colonTok(); c == 0 {
				if c, err = d.valueSlow(); err != nil {
					return err
				}
			}
			if isItems {
				if seen {
					return fmt.Errorf(`paginated response has a duplicate "items" key at offset %d`, d.offset())
				}
				seen = true
				if c != '[' {
					return fmt.Errorf(`paginated response: "items" must be an array, found %s at offset %d`, describe(c), d.offset())
				}
				d.pos++
				if err := d.queueArray(); err != nil {
					return err
				}
			} else if err := d.skipValue(c); err != nil {
				return err
			}
			var done bool
			if c, done, err = d.nextElement('}', "in object", "object value"); err != nil {
				return err
			}
			if done {
				break
			}
		}
	}
	d.pos++
	d.depth--
	if !seen {
		return fmt.Errorf(`response object at offset %d has no "items" array`, start)
	}
	return nil
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

// queueArray handles the queue array after its '['.
func (d *decoder) queueArray() error {
	if err := d.push(); err != nil {
		return err
	}
	c, err := d.nonWS("in queue array")
	if err != nil {
		return err
	}
	if c == ']' {
		d.pos++
		d.depth--
		return nil
	}
	for {
		if c != '{' {
			if c == ']' {
				return d.syntaxErr("invalid character ']' after ','")
			}
			return fmt.Errorf("queue listing element at offset %d is not an object: found %s", d.offset(), describe(c))
		}
		d.pos++
		if ok, err := d.fastQueue(); err != nil {
			return err
		} else if !ok {
			if err := d.queueObject(); err != nil {
				return err
			}
		}
		var done bool
		if c, done, err = d.nextElement(']', "in queue array", "array element"); err != nil {
			return err
		}
		if done {
			d.pos++
			d.depth--
			return nil
		}
	}
}

const (
	fieldOther = iota
	fieldName
	fieldVhost
	fieldMessages
	fieldReady
	fieldUnacked
)

var countFields = [...]struct {
	name  string
	index int
}{
	fieldMessages: {"messages", 0},
	fieldReady:    {"messages_ready", 1},
	fieldUnacked:  {"messages_unacknowledged", 2},
}

// fastQueue decodes the queue object after its '{' when the whole object is in the window and
// spelled exactly as the broker writes it: optionally "messages", "messages_ready" and
// "messages_unacknowledged" with plain integers, then "name" and "vhost" with ASCII strings
// free of escapes and control characters, no whitespace, in that order. Name and Vhost then
// alias the window, which stays put until fn returns. On any deviation it consumes nothing and
// returns false, so the general path decodes (or rejects) the same bytes and alone decides
// what is valid.
func (d *decoder) fastQueue() (bool, error) {
	b := d.buf[d.pos:d.end]
	if d.depth >= d.maxDepth {
		return false, nil
	}
	i := 0
	var m, r, u uint64
	var has collector.Presence
	// Literal keys are compared in pieces of at most 16 bytes, which the compiler does inline
	// with word loads; longer constants would call memequal.
	if len(b) > 11 && string(b[:11]) == `"messages":` {
		var j, k int
		if m, j = fastCount(b, 11); j < 0 || len(b)-j < 18 || string(b[j:j+16]) != `,"messages_ready` || string(b[j+16:j+18]) != `":` {
			return false, nil
		}
		if r, j = fastCount(b, j+18); j < 0 || len(b)-j < 27 || string(b[j:j+16]) != `,"messages_unack` || string(b[j+16:j+27]) != `nowledged":` {
			return false, nil
		}
		if u, k = fastCount(b, j+27); k < 0 || len(b) <= k || b[k] != ',' {
			return false, nil
		}
		i, has = k+1, collector.AllPresent
	}
	if len(b)-i < 8 || string(b[i:i+8]) != `"name":"` {
		return false, nil
	}
	i += 8
	n := scanPlain(b[i:])
	name := b[i : i+n]
	i += n
	if n > d.maxStr || len(b)-i < 11 || string(b[i:i+11]) != `","vhost":"` {
		return false, nil
	}
	i += 11
	n = scanPlain(b[i:])
	vhost := b[i : i+n]
	i += n
	if n > d.maxStr || len(b) < i+2 || b[i] != '"' || b[i+1] != '}' {
		return false, nil
	}
	d.pos += i + 2
	q := &d.q
	q.Vhost, q.Name = vhost, name
	q.Counts, q.Has = collector.Counts{int64(m), int64(r), int64(u)}, has
	return true, d.fn(q)
}

// fastCount parses the non-negative integer at b[i:] for fastQueue, returning the index after
// it, or -1. It needs 20 bytes at i, so that the digit loop needs no end checks: up to 18
// digits and the byte after them (at most 18 digits always fit int64). Longer numbers, like a
// leading zero before a digit, are left to readCount and its errors.
func fastCount(b []byte, i int) (uint64, int) {
	if i < 0 || len(b)-i < 20 {
		return 0, -1
	}
	w := b[i : i+20]
	n := uint64(w[0] - '0')
	if n > 9 {
		return 0, -1
	}
	j := 1
	if n != 0 {
		for ; j < 19; j++ {
			c := w[j] - '0'
			if c > 9 {
				break
			}
			n = n*10 + uint64(c)
		}
	}
	if j > 18 || w[j]-'0' <= 9 {
		return 0, -1
	}
	return n, i + j
}

// queueObject decodes one queue object after its '{' and hands it to fn.
func (d *decoder) queueObject() error {
	if err := d.push(); err != nil {
		return err
	}
	start := d.offset() - 1
	q := &d.q
	*q = Queue{}
	var haveName, haveVhost bool
	c, err := d.nonWS("in queue object")
	if err != nil {
		return err
	}
	if c != '}' {
		for {
			if c != '"' {
				return d.syntaxErr("expected string key in object, found %s", quoteByte(c))
			}
			d.pos++
			field, err := d.queueKey()
			if err != nil {
				return err
			}
			if c = d.colonTok(); c == 0 {
				if c, err = d.valueSlow(); err != nil {
					return err
				}
			}
			switch field {
			case fieldOther:
				err = d.skipValue(c)
			case fieldName, fieldVhost:
				if c != '"' {
					name := "vhost"
					if field == fieldName {
						name = "name"
					}
					return fmt.Errorf("queue field %q at offset %d must be a string, found %s", name, d.offset(), describe(c))
				}
				d.pos++
				if field == fieldName {
					d.name, err = d.readString(d.name[:0])
					haveName = true
				} else {
					d.vhost, err = d.readString(d.vhost[:0])
					haveVhost = true
				}
			default:
				err = d.readCount(c, field)
			}
			if err != nil {
				return err
			}
			var done bool
			if c, done, err = d.nextElement('}', "in queue object", "object value"); err != nil {
				return err
			}
			if done {
				break
			}
		}
	}
	d.pos++
	d.depth--
	if !haveName {
		return fmt.Errorf(`queue object at offset %d has no "name"`, start)
	}
	if !haveVhost {
		return fmt.Errorf(`queue object at offset %d has no "vhost"`, start)
	}
	q.Name, q.Vhost = d.name, d.vhost
	return d.fn(q)
}

// queueKey reads a queue object key after its opening quote and says which field it names.
func (d *decoder) queueKey() (int, error) {
	// Fast path: the broker's own spelling, with the closing quote, is exactly these keys.
	if b := d.buf[d.pos:d.end]; len(b) >= len(`messages_unacknowledged"`) {
		field, n := fieldOther, 0
		switch b[0] {
		case 'm':
			if string(b[:9]) == `messages"` {
				field, n = fieldMessages, 9
			} else if string(b[:15]) == `messages_ready"` {
				field, n = fieldReady, 15
			} else if string(b[:24]) == `messages_unacknowledged"` {
				field, n = fieldUnacked, 24
			}
		case 'n':
			if string(b[:5]) == `name"` {
				field, n = fieldName, 5
			}
		case 'v':
			if string(b[:6]) == `vhost"` {
				field, n = fieldVhost, 6
			}
		}
		if n > 0 && n-1 <= d.maxStr {
			d.pos += n
			return field, nil
		}
	}
	key, err := d.readKey()
	if err != nil {
		return 0, err
	}
	// Classify before reading on: key may alias the window, which the next read moves.
	switch string(key) {
	case "name":
		return fieldName, nil
	case "vhost":
		return fieldVhost, nil
	case "messages":
		return fieldMessages, nil
	case "messages_ready":
		return fieldReady, nil
	case "messages_unacknowledged":
		return fieldUnacked, nil
	}
	return fieldOther, nil
}

// readCount reads a count value starting with c (unconsumed). Integers are accumulated digit by
// digit, so a number split across refills needs no buffering.
func (d *decoder) readCount(c byte, field int) error {
	f := &countFields[field]
	q := &d.q
	dst := &q.Counts[f.index]
	if c == 'n' {
		// null after an earlier value wins, as with encoding/json into a pointer.
		if err := d.literal("null"); err != nil {
			return err
		}
		q.Has &^= collector.Bit(f.index)
		*dst = 0
		return nil
	}
	if c < '0' || c > '9' {
		if c == '-' {
			return fmt.Errorf("queue field %q at offset %d must be a non-negative integer, found a negative number", f.name, d.offset())
		}
		return fmt.Errorf("queue field %q at offset %d must be a non-negative integer or null, found %s", f.name, d.offset(), describe(c))
	}
	start := d.offset()
	var n uint64
	d.pos++
	if c != '0' { // a leading 0 stands alone; a digit after it is a syntax error found by the caller
		n = uint64(c - '0')
		digits := 1
		for {
			if d.pos == d.end && !d.more() {
				break // the caller reports the truncation
			}
			b := d.buf[d.pos:d.end]
			i := 0
			for ; i < len(b); i++ {
				c := b[i] - '0'
				if c > 9 {
					break
				}
				// 19 digits always fit uint64; more always exceed int64.
				if digits+i == 19 {
					return fmt.Errorf("queue field %q at offset %d overflows int64", f.name, start)
				}
				n = n*10 + uint64(c)
			}
			d.pos += i
			digits += i
			if i < len(b) {
				break
			}
		}
		if n > math.MaxInt64 {
			return fmt.Errorf("queue field %q at offset %d overflows int64", f.name, start)
		}
	}
	if d.pos < d.end || d.more() {
		if c := d.buf[d.pos]; c == '.' || c == 'e' || c == 'E' {
			return fmt.Errorf("queue field %q at offset %d must be an integer, found a fraction or exponent", f.name, start)
		}
	}
	*dst = int64(n)
	q.Has |= collector.Bit(f.index)
	return nil
}

// literal consumes the literal word (true, false, null) whose first byte is at d.pos.
func (d *decoder) literal(word string) error {
	d.ensure(len(word))
	avail := d.buf[d.pos:d.end]
	for i := 0; i < len(word); i++ {
		if i == len(avail) {
			d.pos += i
			return d.endErr("in literal " + word)
		}
		if avail[i] != word[i] {
			d.pos += i
			return d.syntaxErr("invalid character %s in literal %s", quoteByte(avail[i]), word)
		}
	}
	d.pos += len(word)
	return nil
}

// readKey reads an object key after its opening quote. The result aliases the window when the key
// is plain and already buffered (the common case, no copy) and d.key otherwise; either way it is
// valid only until the next read.
func (d *decoder) readKey() ([]byte, error) {
	buf := d.buf[d.pos:d.end]
	i := scanPlain(buf)
	if i < len(buf) && buf[i] == '"' && i <= d.maxStr {
		d.pos += i + 1
		return buf[:i], nil
	}
	var err error
	d.key, err = d.readString(d.key[:0])
	return d.key, err
}

func (d *decoder) tooLong(start int64) error {
	return fmt.Errorf("string at offset %d longer than %d bytes", start, d.maxStr)
}

// readString appends the decoded string after its opening quote to dst, consuming the closing
// quote. It stops as soon as the input passes d.maxStr bytes, so memory stays bounded.
func (d *decoder) readString(dst []byte) ([]byte, error) {
	start := d.offset() - 1
	left := d.maxStr // input bytes the string may still use
	for {
		buf := d.buf[d.pos:d.end]
		if len(buf) > left+1 {
			buf = buf[:left+1] // the byte after the limit may still be the closing quote
		}
		i := scanPlain(buf)
		dst = append(dst, buf[:i]...)
		d.pos += i
		left -= i
		if i == len(buf) {
			if left < 0 {
				return dst, d.tooLong(start)
			}
			if d.pos == d.end && !d.more() {
				return dst, d.endErr("in string")
			}
			continue
		}
		switch c := buf[i]; {
		case c == '"':
			d.pos++
			return dst, nil
		case c == '\\':
			var n int
			var err error
			dst, n, err = d.escape(dst)
			if err != nil {
				return dst, err
			}
			left -= n
		case c < 0x20:
			return dst, d.syntaxErr("invalid control character %s in string", quoteByte(c))
		default:
			// Multi-byte UTF-8: copy valid sequences and replace each invalid byte with
			// U+FFFD, exactly as encoding/json does.
			d.ensure(utf8.UTFMax)
			r, size := utf8.DecodeRune(d.buf[d.pos:d.end])
			if r == utf8.RuneError && size == 1 {
				dst = utf8.AppendRune(dst, utf8.RuneError)
			} else {
				dst = append(dst, d.buf[d.pos:d.pos+size]...)
			}
			d.pos += size
			left -= size
		}
		if left < 0 {
			return dst, d.tooLong(start)
		}
	}
}

// escape decodes the escape sequence at d.pos, appending it to dst; n is the input consumed.
func (d *decoder) escape(dst []byte) ([]byte, int, error) {
	d.ensure(2)
	if d.end-d.pos < 2 {
		d.pos = d.end
		return dst, 0, d.endErr("in string escape")
	}
	c := d.buf[d.pos+1]
	switch c {
	case '"', '\\', '/':
	case 'b':
		c = '\b'
	case 'f':
		c = '\f'
	case 'n':
		c = '\n'
	case 'r':
		c = '\r'
	case 't':
		c = '\t'
	case 'u':
		r, err := d.hex4()
		if err != nil {
			return dst, 0, err
		}
		if utf16.IsSurrogate(r) {
			// Pair with a following \u escape if it completes the surrogate; otherwise the
			// first half alone becomes U+FFFD and the next escape is decoded on its own, as in
			// encoding/json.
			d.ensure(12)
			if b := d.buf[d.pos:d.end]; len(b) >= 12 && b[6] == '\\' && b[7] == 'u' {
				if r2, bad := parseHex4(b[8:12]); bad < 0 {
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						d.pos += 12
						return utf8.AppendRune(dst, dec), 12, nil
					}
				}
			}
			r = utf8.RuneError
		}
		d.pos += 6
		return utf8.AppendRune(dst, r), 6, nil
	default:
		d.pos++
		return dst, 0, d.syntaxErr("invalid escape %s in string", quoteByte(c))
	}
	d.pos += 2
	return append(dst, c), 2, nil
}

// hex4 parses the 4 hex digits of the \u escape at d.pos without consuming it.
func (d *decoder) hex4() (rune, error) {
	d.ensure(6)
	b := d.buf[d.pos+2 : min(d.pos+6, d.end)]
	r, bad := parseHex4(b)
	if bad >= 0 {
		d.pos += 2 + bad
		if bad == len(b) {
			return 0, d.endErr("in \\u escape")
		}
		return 0, d.syntaxErr("invalid character %s in \\u escape", quoteByte(b[bad]))
	}
	return r, nil
}

// parseHex4 decodes 4 hex digits; bad is the index of the first non-hex byte (len(b) when b is
// short), or -1.
func parseHex4(b []byte) (r rune, bad int) {
	for i := range 4 {
		if i == len(b) {
			return 0, i
		}
		c := b[i]
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, i
		}
		r = r<<4 | rune(c)
	}
	return r, -1
}

// skipValue validates and discards the value starting with c (unconsumed).
func (d *decoder) skipValue(c byte) error {
	switch {
	case c == '"':
		d.pos++
		return d.skipString()
	case c == '{':
		d.pos++
		return d.skipObject()
	case c == '[':
		d.pos++
		return d.skipArray()
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

func (d *decoder) skipObject() error {
	if err := d.push(); err != nil {
		return err
	}
	c, err := d.nonWS("in object")
	if err != nil {
		return err
	}
	if c != '}' {
		for {
			if c != '"' {
				return d.syntaxErr("expected string key in object, found %s", quoteByte(c))
			}
			d.pos++
			if err := d.skipString(); err != nil {
				return err
			}
			if c = d.colonTok(); c == 0 {
				if c, err = d.valueSlow(); err != nil {
					return err
				}
			}
			if err := d.skipValue(c); err != nil {
				return err
			}
			var done bool
			if c, done, err = d.nextElement('}', "in object", "object value"); err != nil {
				return err
			}
			if done {
				break
			}
		}
	}
	d.pos++
	d.depth--
	return nil
}

func (d *decoder) skipArray() error {
	if err := d.push(); err != nil {
		return err
	}
	c, err := d.nonWS("in array")
	if err != nil {
		return err
	}
	if c != ']' {
		for {
			if err := d.skipValue(c); err != nil {
				return err
			}
			var done bool
			if c, done, err = d.nextElement(']', "in array", "array element"); err != nil {
				return err
			}
			if done {
				break
			}
		}
	}
	d.pos++
	d.depth--
	return nil
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

// skipString validates a string after its opening quote without keeping it.
func (d *decoder) skipString() error {
	start := d.offset() - 1
	left := d.maxStr
	for {
		buf := d.buf[d.pos:d.end]
		if len(buf) > left+1 {
			buf = buf[:left+1]
		}
		i := scanSkip(buf)
		d.pos += i
		left -= i
		if i == len(buf) {
			if left < 0 {
				return d.tooLong(start)
			}
			if d.pos == d.end && !d.more() {
				return d.endErr("in string")
			}
			continue
		}
		switch c := buf[i]; {
		case c == '"':
			d.pos++
			return nil
		case c == '\\':
			d.ensure(2)
			if d.end-d.pos < 2 {
				d.pos = d.end
				return d.endErr("in string escape")
			}
			switch e := d.buf[d.pos+1]; e {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				d.pos += 2
				left -= 2
			case 'u':
				if _, err := d.hex4(); err != nil {
					return err
				}
				d.pos += 6
				left -= 6
			default:
				d.pos++
				return d.syntaxErr("invalid escape %s in string", quoteByte(e))
			}
		default:
			return d.syntaxErr("invalid control character %s in string", quoteByte(c))
		}
		if left < 0 {
			return d.tooLong(start)
		}
	}
}

// skipNumber validates a number literal per the JSON grammar
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, bounded by d.maxStr bytes. What follows the
// literal is checked by the caller, which is how "01" or "1.5.3" are rejected.
func (d *decoder) skipNumber() error {
	// Fast path: a number that ends inside the window is checked in place.
	if b := d.buf[d.pos:d.end]; len(b) > 0 {
		if n := numberLen(b); n > 0 && n <= d.maxStr {
			d.pos += n
			return nil
		}
	}
	return d.skipNumberSlow()
}

// numberLen returns the length of the valid number at the start of b when a byte that cannot
// continue it follows within b, and 0 otherwise (invalid, or possibly continued by the next read).
func numberLen(b []byte) int {
	i := 0
	if b[0] == '-' {
		i++
	}
	if i == len(b) {
		return 0
	}
	switch c := b[i]; {
	case c == '0':
		i++
	case c >= '1' && c <= '9':
		i = skipDigits(b, i+1)
	default:
		return 0
	}
	if i < len(b) && b[i] == '.' {
		j := skipDigits(b, i+1)
		if j == i+1 {
			return 0
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := skipDigits(b, i)
		if j == i {
			return 0
		}
		i = j
	}
	if i == len(b) {
		return 0
	}
	return i
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// skipNumberSlow is skipNumber across refills, and reports errors.
func (d *decoder) skipNumberSlow() error {
	start := d.offset()
	if d.buf[d.pos] == '-' {
		d.pos++
	}
	c, ok := d.peek()
	if !ok {
		return d.endErr("in number")
	}
	if c == '0' {
		d.pos++
	} else if err := d.digits(start); err != nil {
		return err
	}
	if c, ok := d.peek(); ok && c == '.' {
		d.pos++
		if err := d.digits(start); err != nil {
			return err
		}
	}
	if c, ok := d.peek(); ok && (c == 'e' || c == 'E') {
		d.pos++
		if c, ok := d.peek(); ok && (c == '+' || c == '-') {
			d.pos++
		}
		if err := d.digits(start); err != nil {
			return err
		}
	}
	return nil
}

// peek returns the next byte without consuming it; false at end of input.
func (d *decoder) peek() (byte, bool) {
	if d.pos == d.end && !d.more() {
		return 0, false
	}
	return d.buf[d.pos], true
}

// digits consumes [0-9]+ of the number that began at start.
func (d *decoder) digits(start int64) error {
	for n := 0; ; n++ {
		c, ok := d.peek()
		if !ok {
			if n == 0 || d.rerr != nil {
				return d.endErr("in number")
			}
			return nil
		}
		if c < '0' || c > '9' {
			if n == 0 {
				return d.syntaxErr("invalid character %s in number", quoteByte(c))
			}
			return nil
		}
		d.pos++
		if d.offset()-start > int64(d.maxStr) {
			return fmt.Errorf("number at offset %d longer than %d bytes", start, d.maxStr)
		}
	}
}
