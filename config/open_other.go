//go:build !unix

package config

import "os"

func openNoWait(path string) (*os.File, error) { return os.Open(path) }
