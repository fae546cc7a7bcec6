//go:build !unix

package server

import "io"

// lockDir relies on the store's own lock where flock is not available.
func lockDir(dir string) (io.Closer, error) { return io.NopCloser(nil), nil }
