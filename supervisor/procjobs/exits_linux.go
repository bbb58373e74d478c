package procjobs

import (
	"errors"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrGone is Watch's answer for a process that ended, or whose PID now
// names another process, before it could be watched.
var ErrGone = errors.New("the process has ended")

// Exits reports the end of processes that are not the caller's children,
// whose exit sends it no SIGCHLD: a pidfd becomes readable the moment its
// process ends (zombie or reaped, by whichever parent). One goroutine waits
// on an epoll set of them; nothing calls wait on them, so the reaper stays
// the one owner of wait4.
type Exits struct {
	C <-chan int // the PID of each watched process that ended, once

	c    chan int
	ep   int
	wake int // an eventfd that ends the waiting goroutine
	mu   sync.Mutex
	fds  map[int]int // PID → pidfd
	done chan struct{}
	gone chan struct{} // the goroutine has returned
}

// NewExits sets up the epoll set; it fails where pidfds cannot be had
// (Linux before 5.3, a seccomp profile that refuses pidfd_open), and the
// caller then learns of exits only by scanning again.
func NewExits() (*Exits, error) {
	// pidfd_open of our own PID tells whether the kernel and the seccomp
	// profile allow it at all, before anything depends on it.
	probe, err := unix.PidfdOpen(unix.Getpid(), 0)
	if err != nil {
		return nil, err
	}
	unix.Close(probe)
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(ep)
		return nil, err
	}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: -1}); err != nil {
		unix.Close(ep)
		unix.Close(wake)
		return nil, err
	}
	c := make(chan int, 64)
	e := &Exits{C: c, c: c, ep: ep, wake: wake, fds: map[int]int{}, done: make(chan struct{}), gone: make(chan struct{})}
	go e.loop()
	return e, nil
}

// Watch starts watching p. It returns ErrGone when p has ended already,
// or when its PID was reused since Scan read it: then p's exit is news
// now.
func (e *Exits) Watch(p Proc) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.fds[p.PID]; ok {
		return nil
	}
	fd, err := unix.PidfdOpen(p.PID, 0)
	if errors.Is(err, unix.ESRCH) {
		return ErrGone
	}
	if err != nil {
		return err
	}
	// The pidfd names whatever process holds the PID now; the start time
	// read after opening it says whether that is still the one Scan saw.
	var buf [4096]byte
	if st, ok := readStat(buf[:], p.PID); !ok || st.start != p.Start || st.zombie {
		unix.Close(fd)
		return ErrGone
	}
	// One-shot: an ended process stays readable, and it must be reported
	// once, not on every wait until it is forgotten.
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT, Fd: int32(p.PID)}
	if err := unix.EpollCtl(e.ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(fd)
		return err
	}
	e.fds[p.PID] = fd
	return nil
}

// Forget stops watching pid, ended or not.
func (e *Exits) Forget(pid int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if fd, ok := e.fds[pid]; ok {
		// Closing the last reference removes it from the epoll set.
		unix.Close(fd)
		delete(e.fds, pid)
	}
}

// Close ends the waiting and closes every pidfd. C is not closed.
func (e *Exits) Close() {
	select {
	case <-e.done:
		return
	default:
	}
	close(e.done)
	one := [8]byte{1}
	_, _ = unix.Write(e.wake, one[:])
	<-e.gone
	e.mu.Lock()
	defer e.mu.Unlock()
	for pid, fd := range e.fds {
		unix.Close(fd)
		delete(e.fds, pid)
	}
	unix.Close(e.ep)
	unix.Close(e.wake)
}

func (e *Exits) loop() {
	defer close(e.gone)
	evs := make([]unix.EpollEvent, 64)
	for {
		n, err := unix.EpollWait(e.ep, evs, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return
		}
		for _, ev := range evs[:n] {
			if ev.Fd == -1 {
				return // woken by Close
			}
			select {
			case e.c <- int(ev.Fd):
			case <-e.done:
				return
			}
		}
	}
}
