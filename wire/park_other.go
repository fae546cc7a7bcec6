//go:build !linux

package wire

// poller is where parked sockets wait; there is none but on Linux, and a
// socket there waits in the runtime's poller, holding its goroutine.
type poller struct{}

func parkPoller() *poller { return nil }

func (p *poller) park(*SocketReader, func()) (uint32, bool) { return 0, false }

func (p *poller) unpark(*SocketReader, uint32) bool { return false }
