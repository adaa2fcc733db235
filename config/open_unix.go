//go:build unix

package config

import (
	"os"
	"syscall"
)

// openNoWait opens path for reading without blocking: opening a FIFO for
// reading would otherwise wait for a writer, hanging start-up and reload.
func openNoWait(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}
