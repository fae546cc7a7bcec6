//go:build !unix

package bench

// RaiseFileLimit does nothing where there is no RLIMIT_NOFILE; it returns 0.
func RaiseFileLimit() (uint64, error) { return 0, nil }

// processCPU cannot tell here; it returns -1.
func processCPU() float64 { return -1 }
