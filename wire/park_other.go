//go:build !linux

package wire

import "syscall"

// poller is where parked sockets wait; there is none but on Linux, and a
// socket there waits in the runtime's poller, holding its goroutine.
type poller struct{}

func parkPoller() *poller { return nil }

func (p *poller) park(*SocketReader, syscall.RawConn, func()) (uint32, bool) { return 0, false }

func (p *poller) unpark(*SocketReader, syscall.RawConn, uint32) bool { return false }
