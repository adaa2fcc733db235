package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Credentials authenticate the exporter to a management API.
type Credentials struct {
	Username string `yaml:"username"`
	Password Secret `yaml:"password"`
}

// Setting names a value that may be given directly or through a file, for
// error messages that tell the operator exactly what to fix.
type Setting struct {
	Name     string // e.g. "--rabbitmq.password / RABBITMQ_PASSWORD"
	Value    *string
	FileName string // e.g. "--rabbitmq.password-file / RABBITMQ_PASSWORD_FILE"
	File     string
	Default  string
}

// Resolve returns the value, the trimmed contents of the file, or the default.
// Giving both is an error because the operator's intent is ambiguous.
func (s Setting) Resolve() (string, error) {
	if s.Value != nil && s.File != "" {
		return "", fmt.Errorf("%s and %s are both set; set only one", s.Name, s.FileName)
	}
	if s.File != "" {
		return ReadSecretFile(s.FileName, s.File)
	}
	if s.Value != nil {
		return *s.Value, nil
	}
	return s.Default, nil
}

// ReadSecretFile reads a Docker/Kubernetes style secret file: one value, with
// the trailing newline editors and `echo` add removed.
func ReadSecretFile(setting, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", fmt.Errorf("%s: cannot read %q: %v", setting, path, err)
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", fmt.Errorf("%s: file %q is empty", setting, path)
	}
	if strings.ContainsAny(v, "\r\n") {
		return "", fmt.Errorf("%s: file %q holds more than one line", setting, path)
	}
	return v, nil
}
