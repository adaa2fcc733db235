package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ParseByteSize reads a positive size: plain bytes ("1000") or a number with
// a unit (B, KB, MB, GB, KiB, MiB, GiB; case-insensitive). Zero, negative and
// fractional sizes are errors, so a typo cannot silently mean "the default".
func ParseByteSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, errors.New("want a positive number of bytes, optionally with a unit (KiB, MiB, GiB, KB, MB, GB)")
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, errors.New("too large")
	}
	unit := byteUnit(strings.ToLower(strings.TrimSpace(t[i:])))
	if unit == 0 {
		return 0, fmt.Errorf("unknown unit %q (use B, KiB, MiB, GiB, KB, MB or GB)", strings.TrimSpace(t[i:]))
	}
	if n == 0 {
		return 0, errors.New("must be larger than 0")
	}
	if n > (1<<62)/unit {
		return 0, errors.New("too large")
	}
	return n * unit, nil
}

func byteUnit(u string) int64 {
	switch u {
	case "", "b":
		return 1
	case "k", "kib":
		return 1 << 10
	case "kb":
		return 1000
	case "m", "mib":
		return 1 << 20
	case "mb":
		return 1000 * 1000
	case "g", "gib":
		return 1 << 30
	case "gb":
		return 1000 * 1000 * 1000
	}
	return 0
}
