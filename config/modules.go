package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"regexp/syntax"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// File is the --config.file document.
type File struct {
	AuthModules map[string]ModuleConfig `yaml:"auth_modules"`
}

// ModuleConfig is one auth module as written in the file. Secrets are Secret
// so the effective configuration can be printed on debug pages safely.
type ModuleConfig struct {
	Username      string        `yaml:"username"`
	Password      Secret        `yaml:"password,omitempty"`
	PasswordFile  string        `yaml:"password_file,omitempty"`
	TLSConfig     TLSConfig     `yaml:"tls_config,omitempty"`
	Targets       []string      `yaml:"targets"`
	Timeout       time.Duration `yaml:"timeout,omitempty"`
	IncludeVhosts string        `yaml:"include_vhosts,omitempty"`
	ExcludeVhosts string        `yaml:"exclude_vhosts,omitempty"`
	IncludeQueues string        `yaml:"include_queues,omitempty"`
	ExcludeQueues string        `yaml:"exclude_queues,omitempty"`
}

// TLSConfig configures https connections to brokers.
type TLSConfig struct {
	CAFile             string `yaml:"ca_file,omitempty"`
	CertFile           string `yaml:"cert_file,omitempty"`
	KeyFile            string `yaml:"key_file,omitempty"`
	ServerName         string `yaml:"server_name,omitempty"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify,omitempty"`
}

// Module is a validated auth module, ready to use.
type Module struct {
	Name        string
	Credentials Credentials
	TLS         *tls.Config // nil: Go's defaults
	Targets     []*regexp.Regexp
	Timeout     time.Duration // 0: only the scrape timeout applies
	Filter      Filter
	Config      ModuleConfig // as configured, for debug output (secrets print hidden)
}

// Allows reports whether credentials of this module may be sent to t. Patterns
// match the whole host:port, default port filled in.
func (m *Module) Allows(t Target) bool {
	hp := t.HostPort()
	for _, re := range m.Targets {
		if re.MatchString(hp) {
			return true
		}
	}
	return false
}

// Filter selects queues by vhost and name; nil patterns select everything.
type Filter struct {
	IncludeVhosts, ExcludeVhosts, IncludeQueues, ExcludeQueues *regexp.Regexp
}

// Keep reports whether a queue is exported. Excludes win over includes.
func (f *Filter) Keep(vhost, name []byte) bool {
	if f.IncludeVhosts != nil && !f.IncludeVhosts.Match(vhost) {
		return false
	}
	if f.ExcludeVhosts != nil && f.ExcludeVhosts.Match(vhost) {
		return false
	}
	if f.IncludeQueues != nil && !f.IncludeQueues.Match(name) {
		return false
	}
	if f.ExcludeQueues != nil && f.ExcludeQueues.Match(name) {
		return false
	}
	return true
}

// Empty reports whether the filter keeps every queue.
func (f *Filter) Empty() bool {
	return f.IncludeVhosts == nil && f.ExcludeVhosts == nil && f.IncludeQueues == nil && f.ExcludeQueues == nil
}

// CompileAnchored compiles a pattern that must match a whole value, as
// Prometheus relabelling does, so `rabbit-a:15672` cannot match `evil-rabbit-a:15672x`.
func CompileAnchored(setting, pattern string) (*regexp.Regexp, error) {
	re, err := regexp.Compile("^(?:" + pattern + ")$")
	if err != nil {
		reason := err.Error()
		var se *syntax.Error
		if errors.As(err, &se) {
			reason = se.Code.String() // without our anchoring wrapper
		}
		return nil, fmt.Errorf("%s: invalid regular expression %q: %s", setting, pattern, reason)
	}
	return re, nil
}

// NewFilter compiles the four filter patterns; empty strings select everything.
func NewFilter(setting string, includeVhosts, excludeVhosts, includeQueues, excludeQueues string) (Filter, error) {
	var f Filter
	for _, p := range []struct {
		name    string
		pattern string
		dst     **regexp.Regexp
	}{
		{"include_vhosts", includeVhosts, &f.IncludeVhosts},
		{"exclude_vhosts", excludeVhosts, &f.ExcludeVhosts},
		{"include_queues", includeQueues, &f.IncludeQueues},
		{"exclude_queues", excludeQueues, &f.ExcludeQueues},
	} {
		if p.pattern == "" {
			continue
		}
		name := p.name
		if strings.HasPrefix(setting, "--") {
			name = strings.ReplaceAll(name, "_", "-") // flag spelling
		}
		re, err := CompileAnchored(setting+name, p.pattern)
		if err != nil {
			return Filter{}, err
		}
		*p.dst = re
	}
	return f, nil
}

// LoadFile reads and validates a configuration file, reading the secret and
// TLS files it names.
func LoadFile(path string) (map[string]*Module, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("config file %q: %v", path, err)
	}
	f, err := ParseFile(raw)
	if err != nil {
		return nil, fmt.Errorf("config file %q: %v", path, err)
	}
	names := make([]string, 0, len(f.AuthModules))
	for name := range f.AuthModules {
		names = append(names, name)
	}
	sort.Strings(names)
	modules := make(map[string]*Module, len(names))
	for _, name := range names {
		m, err := buildModule(name, f.AuthModules[name])
		if err != nil {
			return nil, fmt.Errorf("config file %q: %v", path, err)
		}
		modules[name] = m
	}
	return modules, nil
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

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func buildModule(name string, c ModuleConfig) (*Module, error) {
	prefix := fmt.Sprintf("auth_modules.%s.", name)
	if name == "" {
		return nil, errors.New("auth_modules: a module has an empty name")
	}
	if c.Username == "" {
		return nil, fmt.Errorf("%susername is required", prefix)
	}
	if c.Password != "" && c.PasswordFile != "" {
		return nil, fmt.Errorf("%spassword and %spassword_file are both set; set only one", prefix, prefix)
	}
	if c.Password == "" && c.PasswordFile == "" {
		return nil, fmt.Errorf("%spassword or %spassword_file is required", prefix, prefix)
	}
	if len(c.Targets) == 0 {
		return nil, fmt.Errorf("%stargets is required: list the host:port patterns these credentials may be sent to", prefix)
	}
	if c.Timeout < 0 {
		return nil, fmt.Errorf("%stimeout must not be negative", prefix)
	}
	m := &Module{Name: name, Config: c, Timeout: c.Timeout, Credentials: Credentials{Username: c.Username, Password: c.Password}}
	if c.PasswordFile != "" {
		pw, err := ReadSecretFile(prefix+"password_file", c.PasswordFile)
		if err != nil {
			return nil, err
		}
		m.Credentials.Password = Secret(pw)
	}
	for i, p := range c.Targets {
		re, err := CompileAnchored(fmt.Sprintf("%stargets[%d]", prefix, i), p)
		if err != nil {
			return nil, err
		}
		m.Targets = append(m.Targets, re)
	}
	var err error
	if m.Filter, err = NewFilter(prefix, c.IncludeVhosts, c.ExcludeVhosts, c.IncludeQueues, c.ExcludeQueues); err != nil {
		return nil, err
	}
	if m.TLS, err = c.TLSConfig.Build(prefix + "tls_config."); err != nil {
		return nil, err
	}
	return m, nil
}

// Build turns the settings into a *tls.Config, or nil when nothing is set.
func (c TLSConfig) Build(prefix string) (*tls.Config, error) {
	if c == (TLSConfig{}) {
		return nil, nil
	}
	cfg := &tls.Config{ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%sca_file: %v", prefix, unwrapPath(err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%sca_file %q holds no PEM certificate", prefix, c.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, fmt.Errorf("%scert_file and %skey_file go together; set both or neither", prefix, prefix)
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%scert_file/key_file: %v", prefix, unwrapPath(err))
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %v", pe.Path, pe.Err)
	}
	return err
}
