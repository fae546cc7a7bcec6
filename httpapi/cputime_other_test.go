//go:build !unix

package httpapi

import "time"

// processCPU is not measured here; the cpu-µs/publish figure reads 0.
func processCPU() time.Duration { return 0 }
