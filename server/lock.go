package server

import "io"

// LockDataDir takes the lock a running server holds on its data dir, so a
// command that works on the store directly (backup, restore) and a server
// never run on one dir at once. It fails at once when the dir is in use.
func LockDataDir(dir string) (io.Closer, error) { return lockDir(dir) }
