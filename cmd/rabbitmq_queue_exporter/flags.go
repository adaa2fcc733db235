package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter/config"
)

// parsedValue is a flag value whose parse errors name the flag and its
// environment variable: kingpin's own say only "invalid syntax", which does
// not tell the operator which of dozens of settings to fix.
type parsedValue[T any] struct {
	dst    *T
	name   string
	parse  func(string) (T, error)
	isBool bool
	text   string
}

func (v *parsedValue[T]) Set(s string) error {
	x, err := v.parse(s)
	if err != nil {
		return fmt.Errorf("%s: invalid value %q: %w", v.name, s, err)
	}
	*v.dst, v.text = x, s
	return nil
}

func (v *parsedValue[T]) String() string { return v.text }

// IsBoolFlag makes kingpin treat a bool value as a switch with --no- form.
func (v *parsedValue[T]) IsBoolFlag() bool { return v.isBool }

func boolValue(dst *bool, name string) *parsedValue[bool] {
	return &parsedValue[bool]{dst: dst, name: name, isBool: true, parse: func(s string) (bool, error) {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return false, fmt.Errorf("want true or false")
		}
		return b, nil
	}}
}

// durationValue accepts durations of at least floor.
func durationValue(dst *time.Duration, name string, floor time.Duration) *parsedValue[time.Duration] {
	return &parsedValue[time.Duration]{dst: dst, name: name, parse: func(s string) (time.Duration, error) {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("want a duration such as 10s or 1m30s")
		}
		if d < floor {
			if floor == 0 {
				return 0, fmt.Errorf("must not be negative")
			}
			return 0, fmt.Errorf("must be at least %s", floor)
		}
		return d, nil
	}}
}

func byteSizeValue(dst *int64, name string) *parsedValue[int64] {
	return &parsedValue[int64]{dst: dst, name: name, parse: config.ParseByteSize}
}

func intValue(dst *int, name string, floor int) *parsedValue[int] {
	return &parsedValue[int]{dst: dst, name: name, parse: func(s string) (int, error) {
		n, err := strconv.Atoi(s)
		if err != nil {
			return 0, fmt.Errorf("want a whole number")
		}
		if n < floor {
			return 0, fmt.Errorf("must be at least %d", floor)
		}
		return n, nil
	}}
}

// optionalString records whether a flag or its env var was given at all, so an
// explicit value and a *_FILE variant can be told apart from a default.
type optionalString struct{ value **string }

func (o optionalString) Set(v string) error { *o.value = &v; return nil }
func (o optionalString) String() string {
	if *o.value == nil {
		return ""
	}
	return **o.value
}
