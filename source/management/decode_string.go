package management

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"unicode/utf16"
	"unicode/utf8"
)

// strPlain marks bytes that a decoded string copies verbatim; skipPlain marks bytes a skipped
// string may contain without further checks (UTF-8 validity does not affect JSON validity).
// Initialised by expression, so that other package variables (brokerKeys) may use them.
var strPlain, skipPlain = plainBytes()

func plainBytes() (str, skip [256]bool) {
	for c := 0x20; c < 256; c++ {
		if c != '"' && c != '\\' {
			skip[c] = true
			str[c] = c < utf8.RuneSelf
		}
	}
	return str, skip
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

// strStatus says where scanString stopped.
type strStatus uint8

const (
	strDone      strStatus = iota // after the closing quote
	strMore                       // b ended inside the string; more input may continue it
	strTooLong                    // the string passed the length limit
	strControl                    // at a control character
	strBadEscape                  // at the invalid letter of an escape
	strBadHex                     // at an invalid digit of a \u escape
	strEnd                        // the input ended inside the string
	strEndEscape                  // ... inside an escape
	strEndHex                     // ... inside a \u escape
)

// scanString is the one implementation of JSON strings. It scans string content from the start
// of b, given that used input bytes of the string came before b, and returns how many bytes
// of b it consumed, the new used, and why it stopped. With keep it appends the decoded string
// to dst as encoding/json decodes it (U+FFFD for invalid UTF-8 and lone surrogates); without,
// it only validates. final says that no input follows b; otherwise, rather than fail at the end
// of b, it stops before an escape or UTF-8 sequence that b may cut, so that the caller can
// refill and call again. Content longer than limit input bytes fails as soon as the scan passes
// limit, so that the work stays bounded.
func scanString(dst, b []byte, used, limit int, keep, final bool) ([]byte, int, int, strStatus) {
	i := 0
	for {
		rest := b[i:]
		if limit := limit - used + 1; len(rest) > limit {
			rest = rest[:limit] // the byte after the limit may still be the closing quote
		}
		var n int
		if keep {
			n = scanPlain(rest)
			dst = append(dst, rest[:n]...)
		} else {
			n = scanSkip(rest)
		}
		i += n
		used += n
		if n == len(rest) {
			switch {
			case used > limit:
				return dst, i, used, strTooLong
			case final:
				return dst, i, used, strEnd
			}
			return dst, i, used, strMore
		}
		switch c := b[i]; {
		case c == '"':
			return dst, i + 1, used, strDone
		case c == '\\':
			var st strStatus
			dst, n, st = unescape(dst, b[i:], keep, final)
			if st != strDone {
				return dst, i + n, used, st
			}
		case c < 0x20:
			return dst, i, used, strControl
		default:
			// Multi-byte UTF-8 (only when keeping): copy valid sequences and replace each
			// invalid byte with U+FFFD, exactly as encoding/json does.
			if !final && !utf8.FullRune(b[i:]) {
				return dst, i, used, strMore
			}
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				dst = utf8.AppendRune(dst, utf8.RuneError)
			} else {
				dst = append(dst, b[i:i+size]...)
			}
			n = size
		}
		i += n
		used += n
		if used > limit {
			return dst, i, used, strTooLong
		}
	}
}

// unescape decodes the escape sequence at the start of b (a backslash), appending it to dst
// when keep is set. n is the input consumed; on a failure, the offset of its position.
func unescape(dst, b []byte, keep, final bool) (_ []byte, n int, _ strStatus) {
	if len(b) < 2 {
		if final {
			return dst, len(b), strEndEscape
		}
		return dst, 0, strMore
	}
	c := b[1]
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
		if len(b) < 6 && !final {
			return dst, 0, strMore
		}
		r, bad := parseHex4(b[2:min(6, len(b))])
		if bad >= 0 {
			if 2+bad == len(b) {
				return dst, len(b), strEndHex
			}
			return dst, 2 + bad, strBadHex
		}
		if !keep {
			return dst, 6, strDone
		}
		if utf16.IsSurrogate(r) {
			// Pair with a following \u escape if it completes the surrogate; otherwise the
			// first half alone becomes U+FFFD and the next escape is decoded on its own, as in
			// encoding/json.
			if len(b) < 12 && !final {
				return dst, 0, strMore
			}
			if len(b) >= 12 && b[6] == '\\' && b[7] == 'u' {
				if r2, bad := parseHex4(b[8:12]); bad < 0 {
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						return utf8.AppendRune(dst, dec), 12, strDone
					}
				}
			}
			r = utf8.RuneError
		}
		return utf8.AppendRune(dst, r), 6, strDone
	default:
		return dst, 1, strBadEscape
	}
	if keep {
		dst = append(dst, c)
	}
	return dst, 2, strDone
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

// readString reads a string after its opening quote, consuming the closing quote. With keep it
// appends the decoded string to dst; without, it validates and discards it. It stops as soon as
// the input passes d.maxStr bytes, so memory stays bounded.
func (d *decoder) readString(dst []byte, keep bool) ([]byte, error) {
	start := d.offset() - 1
	used := 0
	for {
		var n int
		var st strStatus
		dst, n, used, st = scanString(dst, d.buf[d.pos:d.end], used, d.maxStr, keep, d.eof || d.rerr != nil)
		d.pos += n
		switch st {
		case strDone:
			return dst, nil
		case strMore:
			d.more() // at the end of input, the next scan is final
			continue
		case strTooLong:
			return dst, d.tooLong(start)
		case strControl:
			return dst, d.syntaxErr("invalid control character %s in string", quoteByte(d.buf[d.pos]))
		case strBadEscape:
			return dst, d.syntaxErr("invalid escape %s in string", quoteByte(d.buf[d.pos]))
		case strBadHex:
			return dst, d.syntaxErr("invalid character %s in \\u escape", quoteByte(d.buf[d.pos]))
		case strEndEscape:
			return dst, d.endErr("in string escape")
		case strEndHex:
			return dst, d.endErr("in \\u escape")
		}
		return dst, d.endErr("in string")
	}
}

// skipString validates a string after its opening quote without keeping it.
func (d *decoder) skipString() error {
	// Most strings end within the window, without escapes: check those here.
	buf := d.buf[d.pos:d.end]
	if i := scanSkip(buf); i < len(buf) && buf[i] == '"' && i <= d.maxStr {
		d.pos += i + 1
		return nil
	}
	_, err := d.readString(nil, false)
	return err
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
	d.key, err = d.readString(d.key[:0], true)
	return d.key, err
}

func (d *decoder) tooLong(start int64) error {
	return fmt.Errorf("string at offset %d longer than %d bytes", start, d.maxStr)
}
