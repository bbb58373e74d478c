package testkit

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// resetEnv marks a test binary that ResetSignals has already started again.
const resetEnv = "DRAINIT_TEST_SIGNALS_RESET"

// ResetSignals gives the test binary, and so every process its tests start,
// default signal dispositions and an empty signal mask, whatever the shell,
// nohup or CI runner that ran `go test` handed down: tests that send
// signals to drainit or to an app must not depend on that. Call it first
// thing in the TestMain of every package whose tests start processes, after
// any dispatch to a helper mode, since a helper child keeps on purpose the
// state its test gave it:
//
//	func TestMain(m *testing.M) {
//		if err := testkit.ResetSignals(); err != nil {
//			fmt.Fprintln(os.Stderr, err)
//			os.Exit(1)
//		}
//		os.Exit(m.Run())
//	}
//
// It executes the test binary again, once, in place: same PID, arguments,
// environment and descriptors, so `go test` and its flags (-run, -race,
// -cover) see no difference; it returns nil in the new image. It cannot
// mend the running process instead: a child gets the mask of the thread
// that forks it, and the runtime gives every thread it makes the mask the
// process started with (less the signals it needs itself), so what was
// blocked at start stays blocked in children forked from any thread but
// one locked and emptied; and it keeps an ignored SIGHUP or SIGINT
// ignored, which children inherit.
// execve does neither: it keeps the calling thread's mask and resets every
// caught signal to its default.
//
// The marker it sets (DRAINIT_TEST_SIGNALS_RESET=1) stays in the
// environment, so the test binary run again as a child by -test.run keeps
// the state its test gave it too; set by hand, it skips the reset (under a
// debugger, say). On error the signal state is undefined: exit.
func ResetSignals() error {
	if os.Getenv(resetEnv) == "1" {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("resetting the signal state: %w", err)
	}
	if err := os.Setenv(resetEnv, "1"); err != nil {
		return fmt.Errorf("resetting the signal state: %w", err)
	}
	// The mask is per thread, and execve keeps the calling thread's: empty
	// it and exec on the same thread. Never unlocked: the thread is gone
	// with the image, or in an odd state if the exec failed.
	runtime.LockOSThread()
	for sig := 1; sig <= 64; sig++ {
		if sig == int(syscall.SIGKILL) || sig == int(syscall.SIGSTOP) {
			continue
		}
		if err := setDefault(sig); err != nil {
			return fmt.Errorf("resetting signal %d: %w", sig, err)
		}
	}
	if err := unix.PthreadSigmask(unix.SIG_SETMASK, &unix.Sigset_t{}, nil); err != nil {
		return fmt.Errorf("emptying the signal mask: %w", err)
	}
	err = syscall.Exec(exe, os.Args, os.Environ())
	return fmt.Errorf("executing the test binary again: %w", err)
}

// setDefault sets sig's disposition to SIG_DFL with rt_sigaction itself:
// os/signal cannot reach every signal (SIGPROF, 32 and 33 stay ignored
// if they started so), and x/sys/unix has no wrapper. A signal with a Go
// handler goes back to its default by execve anyway; an ignored one would
// not. The window until execve is short, and a signal that lands in it
// does what it would do after.
func setDefault(sig int) error {
	// All zeros is SIG_DFL, no flags and nothing masked, in the kernel's
	// struct sigaction of every architecture.
	var act [4]uint64
	// The kernel's sigset_t: 64 bits (128 on mips, which drainit does not
	// build for).
	const sigsetSize = 8
	_, _, errno := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&act)), 0, sigsetSize, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
