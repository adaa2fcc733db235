package queueset

import (
	"encoding/binary"
	"slices"
	"unicode/utf8"
)

// appendEscaped appends v escaped as a label value (see escapeInto).
func appendEscaped(b, v []byte) []byte {
	n := len(b)
	b = slices.Grow(b, 3*len(v))[:n+3*len(v)]
	return b[:n+escapeInto(b[n:], v)]
}

// escapeInto writes v escaped as both exposition formats require (backslash,
// double quote and line feed) to dst, which must hold 3*len(v) bytes, and
// returns the bytes written. Each byte that is not part of valid UTF-8
// becomes U+FFFD, as encoding/json decodes it: every source then yields the
// same label value for the same name, and the output is always valid.
func escapeInto(dst, v []byte) int {
	// Queue and vhost names are almost always ASCII without the three bytes:
	// check the whole value a word at a time and copy it in one go.
	if !mayNeedEscape(v) {
		return copy(dst, v)
	}
	n := 0
	for i := 0; i < len(v); {
		c := v[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRune(v[i:])
			if r == utf8.RuneError && size == 1 {
				n += utf8.EncodeRune(dst[n:], utf8.RuneError)
			} else {
				n += copy(dst[n:], v[i:i+size])
			}
			i += size
			continue
		}
		switch c {
		case '\\', '"':
			dst[n], dst[n+1] = '\\', c
			n += 2
		case '\n':
			dst[n], dst[n+1] = '\\', 'n'
			n += 2
		default:
			dst[n] = c
			n++
		}
		i++
	}
	return n
}

// mayNeedEscape is false when v certainly holds no backslash, double quote,
// line feed or non-ASCII byte (which might be invalid UTF-8). It reads v as
// 64-bit words (the last one overlapping, short values packed into one) and
// flags bytes below '#' (which covers '"', '\n' and a few rare ones such as
// space), equal to '\\' or from 0x80: three cheap word tests, where a false
// alarm only costs the byte-wise path.
func mayNeedEscape(v []byte) bool {
	n := len(v)
	switch {
	case n >= 8:
		for i := 0; i+8 <= n; i += 8 {
			if wordMayNeedEscape(binary.LittleEndian.Uint64(v[i:])) {
				return true
			}
		}
		return wordMayNeedEscape(binary.LittleEndian.Uint64(v[n-8:]))
	case n >= 4:
		return wordMayNeedEscape(uint64(binary.LittleEndian.Uint32(v)) | uint64(binary.LittleEndian.Uint32(v[n-4:]))<<32)
	case n > 0:
		// Bytes 3-7 are 'a', which never alarms.
		return wordMayNeedEscape(uint64(v[0]) | uint64(v[n/2])<<8 | uint64(v[n-1])<<16 | 0x6161616161000000)
	}
	return false
}

// wordMayNeedEscape applies the classic SWAR tests "some byte < '#'" and
// "some byte == '\\'" (zero byte in x XOR backslashes) and "some byte has its
// high bit set" to the 8 bytes of x. Borrows may flag bytes above a real hit only.
func wordMayNeedEscape(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	y := x ^ ('\\' * ones)
	return ((x-'#'*ones)&^x|(y-ones)&^y|x)&highs != 0
}
