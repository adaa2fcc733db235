package management

import (
	"fmt"
	"math"
	"strconv"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/queue"
)

// readCount reads the value of count field f starting with c (unconsumed) into d.q.
func (d *decoder) readCount(c byte, f int) error {
	q := &d.q
	if d.keys.float>>f&1 != 0 {
		return d.readFloat(c, f)
	}
	n, null, err := d.readUint(c, "queue field", d.keys.counts[f], true)
	if err != nil {
		return err
	}
	if null {
		// null after an earlier value wins, as with encoding/json into a pointer.
		q.Has &^= queue.Bit(f)
		q.Counts[f] = 0
		return nil
	}
	q.Counts[f] = n
	q.Has |= queue.Bit(f)
	return nil
}

// maxFloatBytes bounds a Float field's number literal: a double needs at
// most 24 bytes in its shortest form, so a longer one is not one we accept.
const maxFloatBytes = 40

// readFloat reads the value of Float field f starting with c (unconsumed): a
// JSON number, kept as float64 bits, or null (absent).
func (d *decoder) readFloat(c byte, f int) error {
	q := &d.q
	key := d.keys.counts[f]
	if c == 'n' {
		q.Has &^= queue.Bit(f)
		q.Counts[f] = 0
		return d.literal("null")
	}
	start := d.offset()
	var lit [maxFloatBytes + 1]byte
	n := 0
	for {
		c, ok := d.peek()
		if !ok || !numberByte(c) {
			break
		}
		if n == maxFloatBytes {
			return fmt.Errorf("queue field %q at offset %d: number longer than %d bytes", key, start, maxFloatBytes)
		}
		lit[n] = c
		n++
		d.pos++
	}
	lit[n] = ' ' // numberLen needs a byte after the literal
	if n == 0 || numberLen(lit[:n+1]) != n {
		if n == 0 {
			return fmt.Errorf("queue field %q at offset %d must be a number or null, found %s", key, start, describe(c))
		}
		return fmt.Errorf("queue field %q at offset %d is not a valid number", key, start)
	}
	v, err := strconv.ParseFloat(string(lit[:n]), 64)
	if err != nil {
		return fmt.Errorf("queue field %q at offset %d is out of range", key, start)
	}
	q.Counts[f] = int64(math.Float64bits(v))
	q.Has |= queue.Bit(f)
	return nil
}

// numberByte reports whether c may be part of a JSON number literal.
func numberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// readUint reads a non-negative integer that fits int64, or null when nullOK, starting with c
// (unconsumed); what and key name the member in errors. Integers are accumulated digit by digit,
// so a number split across refills needs no buffering.
func (d *decoder) readUint(c byte, what, key string, nullOK bool) (n int64, null bool, err error) {
	if c == 'n' && nullOK {
		return 0, true, d.literal("null")
	}
	if c < '0' || c > '9' {
		if c == '-' {
			return 0, false, fmt.Errorf("%s %q at offset %d must be a non-negative integer, found a negative number", what, key, d.offset())
		}
		orNull := ""
		if nullOK {
			orNull = " or null"
		}
		return 0, false, fmt.Errorf("%s %q at offset %d must be a non-negative integer%s, found %s", what, key, d.offset(), orNull, describe(c))
	}
	start := d.offset()
	var u uint64
	d.pos++
	if c != '0' { // a leading 0 stands alone; a digit after it is a syntax error found by the caller
		u = uint64(c - '0')
		digits := 1
		for d.pos != d.end || d.more() {

			b := d.buf[d.pos:d.end]
			i := 0
			for ; i < len(b); i++ {
				c := b[i] - '0'
				if c > 9 {
					break
				}
				// 19 digits always fit uint64; more always exceed int64.
				if digits+i == 19 {
					return 0, false, fmt.Errorf("%s %q at offset %d overflows int64", what, key, start)
				}
				u = u*10 + uint64(c)
			}
			d.pos += i
			digits += i
			if i < len(b) {
				break
			}
		}
		if u > math.MaxInt64 {
			return 0, false, fmt.Errorf("%s %q at offset %d overflows int64", what, key, start)
		}
	}
	if d.pos < d.end || d.more() {
		if c := d.buf[d.pos]; c == '.' || c == 'e' || c == 'E' {
			return 0, false, fmt.Errorf("%s %q at offset %d must be an integer, found a fraction or exponent", what, key, start)
		}
	}
	return int64(u), false, nil
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
