package plugin

import "bytes"

// splitRaw reads labels (the text between `{vhost="` and `"} `) as the raw
// versions write it: vhost, `",queue="`, name, nothing escaped. n is the
// number of places `",queue="` occurs (overlaps included), each a possible
// split; only n == 1 reads one way. vhost and name are those of the first.
func splitRaw(labels []byte) (vhost, name []byte, n int) {
	i := bytes.Index(labels, []byte(labelsMid))
	if i < 0 {
		return nil, nil, 0
	}
	vhost, name = labels[:i], labels[i+len(labelsMid):]
	n = 1
	for j := i + 1; j < len(labels); {
		k := bytes.Index(labels[j:], []byte(labelsMid))
		if k < 0 {
			break
		}
		n++
		j += k + 1
	}
	return vhost, name, n
}

// splitRaw is splitRaw resolved by the known vhosts: of several possible
// splits, the one whose vhost is a known vhost name, if exactly one is.
func (p *parser) splitRaw(labels []byte) (vhost, name []byte, n int) {
	vhost, name, n = splitRaw(labels)
	if n < 2 || p.lim.Vhosts == nil {
		return vhost, name, n
	}
	known := 0
	for j := 0; j < len(labels); j++ {
		k := bytes.Index(labels[j:], []byte(labelsMid))
		if k < 0 {
			break
		}
		j += k
		if p.lim.Vhosts[string(labels[:j])] {
			known++
			vhost, name = labels[:j], labels[j+len(labelsMid):]
		}
	}
	if known == 1 {
		return vhost, name, 1
	}
	return vhost, name, n
}

// unescape reads labels as the escaping versions write it: each value with
// backslash, double quote and line feed escaped (`\\`, `\"`, `\n`), so the
// only bare double quotes are the separator's. Anything else (another
// escape, a bare quote, a trailing backslash) does not read.
func (p *parser) unescape(labels []byte) (vhost, name []byte, ok bool) {
	var rest []byte
	p.scratchV, rest, ok = unescapeValue(p.scratchV[:0], labels)
	if !ok || !bytes.HasPrefix(rest, []byte(labelsMid)) {
		return nil, nil, false
	}
	p.scratchN, rest, ok = unescapeValue(p.scratchN[:0], rest[len(labelsMid):])
	// The name's value runs to the end of labels: no closing quote follows
	// (the caller cut `"} ` off), so unescapeValue must stop at the end.
	if ok || len(rest) != 0 {
		return nil, nil, false
	}
	return p.scratchV, p.scratchN, true
}

// unescapeValue appends the value at the start of b to dst up to its
// closing (unescaped) double quote, and returns what follows from that
// quote on. ok is false for a bad escape and when b ends first, with rest
// empty in the latter case only.
func unescapeValue(dst, b []byte) (out, rest []byte, ok bool) {
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '"':
			return dst, b[i:], true
		case '\\':
			if i+1 == len(b) {
				return dst, b[i:], false
			}
			i++
			switch b[i] {
			case '\\':
				dst = append(dst, '\\')
			case '"':
				dst = append(dst, '"')
			case 'n':
				dst = append(dst, '\n')
			default:
				return dst, b[i:], false
			}
		default:
			dst = append(dst, c)
		}
	}
	return dst, nil, false
}
