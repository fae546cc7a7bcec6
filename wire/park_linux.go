//go:build linux

package wire

import (
	"errors"
	"sync"
	"syscall"
)

// poller is one epoll set, shared by the process, where parked sockets
// wait. A socket is registered one-shot and level-triggered: it fires once,
// even for bytes that came before it was added, and is then disabled until
// it is parked again. Registrations are known by a token, not by their file
// descriptor, because a descriptor is reused as soon as a socket closes.
type poller struct {
	epfd int

	mu      sync.Mutex
	next    uint32
	waiting map[uint32]waiter
}

type waiter struct {
	ready func()
	by    *SocketReader // so a token that came round again is not taken for another's
}

var (
	pollerOnce sync.Once
	thePoller  *poller // nil when epoll could not be set up
)

// parkPoller is the process's poller, started at its first use.
func parkPoller() *poller {
	pollerOnce.Do(func() {
		fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			return // parking is an economy: without it sockets wait as before
		}
		thePoller = &poller{epfd: fd, waiting: make(map[uint32]waiter)}
		go thePoller.run()
	})
	return thePoller
}

// run waits for parked sockets for the life of the process, and starts the
// ready function of each that fires on a goroutine of its own.
func (p *poller) run() {
	events := make([]syscall.EpollEvent, 256)
	for {
		n, err := syscall.EpollWait(p.epfd, events, -1)
		if err != nil {
			// EINTR only: the set and the buffer are ours and valid.
			continue
		}
		p.mu.Lock()
		for i := range events[:n] {
			id := uint32(events[i].Fd)
			if w, ok := p.waiting[id]; ok {
				delete(p.waiting, id)
				go w.ready()
			}
		}
		p.mu.Unlock()
	}
}

// park registers raw's socket; ready runs once it is readable, hung up or
// failed, unless unpark comes first. The token is never 0.
func (p *poller) park(by *SocketReader, raw syscall.RawConn, ready func()) (uint32, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		p.next++
		if _, used := p.waiting[p.next]; p.next != 0 && !used {
			break
		}
	}
	id := p.next
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(id)}
	var err error
	cerr := raw.Control(func(fd uintptr) {
		// A socket parked before is still in the set, disabled.
		err = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_MOD, int(fd), &ev)
		if errors.Is(err, syscall.ENOENT) {
			err = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
		}
	})
	if cerr != nil || err != nil {
		return 0, false
	}
	// Under mu, so that run, which may have the event already, waits for it.
	p.waiting[id] = waiter{ready, by}
	return id, true
}

// unpark cancels the park with token id and reports whether it did: false
// when its ready function has already been started.
func (p *poller) unpark(by *SocketReader, raw syscall.RawConn, id uint32) bool {
	p.mu.Lock()
	w, ok := p.waiting[id]
	ok = ok && w.by == by
	if ok {
		delete(p.waiting, id)
	}
	p.mu.Unlock()
	if ok {
		_ = raw.Control(func(fd uintptr) {
			_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
		})
	}
	return ok
}
