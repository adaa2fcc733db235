//go:build !unix

package benchutil

import "time"

// CPUTime is unknown on this platform.
func CPUTime() time.Duration { return 0 }
