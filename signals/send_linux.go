package signals

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// Send delivers sig to pid, or to the process group whose leader is pid when
// group is true. ESRCH comes back as is: the caller decides whether a target
// that is already gone matters (it rarely does: the reaper learns of it).
func Send(pid int, sig syscall.Signal, group bool) error {
	target := pid
	if group {
		target = -pid
	}
	return unix.Kill(target, sig)
}

// Gone reports whether err from Send means the target no longer exists.
func Gone(err error) bool { return errors.Is(err, unix.ESRCH) }
