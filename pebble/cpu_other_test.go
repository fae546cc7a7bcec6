//go:build !unix

package pebble

import "time"

func processCPU() time.Duration { return 0 }
