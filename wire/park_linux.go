//go:build linux

package wire

import (
	"errors"
	"os"
	"sync"
	"syscall"
	"time"
)

// poller is one epoll set, shared by the process, where parked sockets
// wait. A socket is registered one-shot and level-triggered: it fires once,
// even for bytes that came before it was added, and is then disabled until
// it is parked again. Registrations are known by a token, not by their file
// descriptor, because a descriptor is reused as soon as a socket closes.
//
// The set's own descriptor waits in the runtime's network poller like a
// socket's, so its goroutine blocks in no system call: a goroutine in a
// blocking call keeps its P a while, and the readers it starts would wait
// in that P's queue for the scheduler to take it back.
type poller struct {
	epfd int
	file *os.File        // the set's descriptor, kept open by its use
	raw  syscall.RawConn // of file

	mu      sync.Mutex
	next    uint32
	waiting map[uint32]waiter
	broken  bool // run ended: nothing parks any more
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
		// Parking is an economy: without a poller sockets wait as before.
		if p, err := newPoller(); err == nil {
			thePoller = p
			go p.run()
		}
	})
	return thePoller
}

// newPoller makes an epoll set whose descriptor the runtime polls.
func newPoller() (*poller, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "syncpoint-park")
	// A deadline is refused for a descriptor the runtime does not poll.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, err
	}
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &poller{epfd: fd, file: f, raw: raw, waiting: make(map[uint32]waiter)}, nil
}

// run takes the set's events for the life of the process, and starts the
// ready function of each parked socket that fired on a goroutine of its
// own. It drains the set before each wait: the runtime's poller reports
// the set's descriptor edge-triggered.
func (p *poller) run() {
	events := make([]syscall.EpollEvent, 256)
	_ = p.raw.Read(func(fd uintptr) bool {
		for {
			n, err := syscall.EpollWait(int(fd), events, 0)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil || n <= 0 {
				return false // drained: wait for the next event
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
	})
	// The runtime refused to wait for the set (it never should): every
	// parked socket reads on in its own goroutine, and none parks again.
	p.mu.Lock()
	p.broken = true
	for id, w := range p.waiting {
		delete(p.waiting, id)
		go w.ready()
	}
	p.mu.Unlock()
}

// park registers by's socket; ready runs once it is readable, hung up or
// failed, unless unpark comes first. The token is never 0.
func (p *poller) park(by *SocketReader, ready func()) (uint32, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.broken {
		return 0, false
	}
	for {
		p.next++
		if _, used := p.waiting[p.next]; p.next != 0 && !used {
			break
		}
	}
	id := p.next
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(id)}
	var err error
	cerr := by.raw.Control(func(fd uintptr) {
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
func (p *poller) unpark(by *SocketReader, id uint32) bool {
	p.mu.Lock()
	w, ok := p.waiting[id]
	ok = ok && w.by == by
	if ok {
		delete(p.waiting, id)
	}
	p.mu.Unlock()
	if ok {
		_ = by.raw.Control(func(fd uintptr) {
			_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
		})
	}
	return ok
}
