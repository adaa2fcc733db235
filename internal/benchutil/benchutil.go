// Package benchutil helps benchmarks stay meaningful on a shared machine.
package benchutil

import (
	"testing"
	"time"
)

// ReportCPU reports the process CPU time (user+sys, GC workers included) per
// iteration as cpu-ns/op, next to the wall-clock ns/op. On a busy machine wall
// time mostly measures the neighbours; CPU time is what the code costs. It
// reports nothing where CPU time is unavailable.
func ReportCPU(b *testing.B, start time.Duration) {
	if end := CPUTime(); end > 0 && b.N > 0 {
		b.ReportMetric(float64((end-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}
