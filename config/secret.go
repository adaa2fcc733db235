package config

import "log/slog"

// Secret holds a password. Every way of printing it (fmt, slog, YAML, JSON)
// shows a placeholder, so a secret cannot leak through a log line or debug page
// by accident; code that needs the value converts explicitly with string(s).
type Secret string

const hiddenSecret = "<secret>"

func (s Secret) String() string   { return hiddenSecret }
func (s Secret) GoString() string { return hiddenSecret }

// LogValue keeps slog from printing the value.
func (s Secret) LogValue() slog.Value { return slog.StringValue(hiddenSecret) }

// MarshalYAML and MarshalJSON print the placeholder, for debug output of effective config.
func (s Secret) MarshalYAML() (any, error)    { return hiddenSecret, nil }
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + hiddenSecret + `"`), nil }
