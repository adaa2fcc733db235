package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// File is the --config.file document.
type File struct {
	AuthModules map[string]ModuleConfig `yaml:"auth_modules"`
}

// ParseFile decodes a configuration document strictly. Unknown fields are
// errors: a misspelt `pasword_file` must not silently mean "no password".
func ParseFile(raw []byte) (*File, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	// io.EOF: an empty file means "no modules", which is valid.
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, errors.New(oneLine(err.Error()))
	}
	return &f, nil
}

// loadFile reads, validates and builds the auth modules of a config file.
func loadFile(path string, opts BuildOptions) (map[string]*Module, error) {
	raw, err := readBounded(path, MaxConfigFileBytes)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	f, err := ParseFile(raw)
	if err != nil {
		return nil, fmt.Errorf("config file %q: %w", path, err)
	}
	names := make([]string, 0, len(f.AuthModules))
	for name := range f.AuthModules {
		names = append(names, name)
	}
	sort.Strings(names)
	modules := make(map[string]*Module, len(names))
	for _, name := range names {
		if name == "" {
			return nil, fmt.Errorf("config file %q: auth_modules: a module has an empty name", path)
		}
		prefix := "auth_modules." + name + "."
		setting := func(field string) string { return prefix + field }
		m, err := buildModule(name, f.AuthModules[name], setting, opts)
		if err != nil {
			return nil, fmt.Errorf("config file %q: %w", path, err)
		}
		// 403 answers name the file, so the operator knows where to allow a target.
		m.setting = func(field string) string { return prefix + field + " in " + path }
		modules[name] = m
	}
	return modules, nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
