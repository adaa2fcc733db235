package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// MaxSecretFileBytes bounds a secret file. Secrets are one line; a larger file
// is a mistake (or /dev/zero) that must fail at once instead of filling memory.
const MaxSecretFileBytes = 64 << 10

// MaxConfigFileBytes bounds --config.file and the TLS files a module names.
const MaxConfigFileBytes = 16 << 20

// ReadTLSFile reads a CA, certificate or key file a module names: a regular
// file of at most MaxConfigFileBytes. The broker clients read their TLS
// files through it whenever a connection needs them (brokerhttp.ClientConfig),
// so a file replaced after start-up (by a FIFO, a device or a huge file)
// fails the probes that need it with the reason, as it would fail a reload.
func ReadTLSFile(path string) ([]byte, error) { return readBounded(path, MaxConfigFileBytes) }

// ReadSecretFile reads a Docker/Kubernetes style secret file: one value, with
// the trailing newline editors and `echo` add removed. setting names the
// option in errors.
func ReadSecretFile(setting, path string) (string, error) {
	b, err := readBounded(path, MaxSecretFileBytes)
	if err != nil {
		return "", fmt.Errorf("%s: %w", setting, err)
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", fmt.Errorf("%s: file %q is empty", setting, path)
	}
	if strings.ContainsAny(v, "\r\n") {
		return "", fmt.Errorf("%s: file %q holds more than one line", setting, path)
	}
	if strings.IndexByte(v, 0) >= 0 {
		return "", fmt.Errorf("%s: file %q holds a NUL byte", setting, path)
	}
	return v, nil
}

// readBounded reads a regular file of at most limit bytes. Devices, FIFOs and
// sockets are refused before reading: /dev/zero never ends and a FIFO
// without a writer blocks, which would hang start-up and every reload.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := openNoWait(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %q: %w", path, unwrapPath(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("cannot read %q: %w", path, unwrapPath(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%q is not a regular file", path)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("file %q is larger than %d bytes", path, limit)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read %q: %w", path, unwrapPath(err))
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("file %q is larger than %d bytes", path, limit)
	}
	return b, nil
}

// checkFile verifies that a file another library will read (TLS material,
// re-read by prometheus/common when it changes) is a regular file of sane size.
func checkFile(setting, path string) error {
	if path == "" {
		return nil
	}
	if _, err := readBounded(path, MaxConfigFileBytes); err != nil {
		return fmt.Errorf("%s: %w", setting, err)
	}
	return nil
}

func unwrapPath(err error) error {
	if pe, ok := errors.AsType[*os.PathError](err); ok {
		return pe.Err
	}
	return err
}
