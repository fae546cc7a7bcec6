package server

import "github.com/cockroachdb/pebble/v2/vfs"

// WithStoreFS puts the embedded store of cfg on fs, so a test can make the
// disk fail under a running server.
func WithStoreFS(cfg *Config, fs vfs.FS) { cfg.storeFS = fs }
