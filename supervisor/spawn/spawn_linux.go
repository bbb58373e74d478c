// Package spawn starts the command that drainit supervises: in a process
// group of its own, owning the terminal when drainit does, with the signal
// dispositions drainit was started with, and with a shell's exit codes when
// it cannot be started.
//
// Its signal mask is that of the thread that forks, which the Go runtime
// set from the mask drainit started with, less the signals it always
// unblocks (HUP, INT, TERM, QUIT, CHLD, URG, ...: blockableSig in
// runtime/signal_unix.go). The start mask itself is not to be had: the
// runtime keeps it in runtime.initSigmask, which the linker refuses to
// link to, and /proc shows the mask only as it is now. The README lists
// the signals; cmd/drainit's conformance test holds it to that.
//
// It starts and never waits: the caller's reaper owns wait4. os/exec is not
// used for that reason; exec.Cmd.Wait beside a wait4(-1) loses statuses.
// The command is found and run as execvp(3) would (see exec_linux.go), so
// that drainit -- CMD does what CMD does in a shell, as with tini and
// dumb-init.
package spawn

import (
	"errors"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// Exit codes of the shell's convention, for a command that cannot start.
const (
	ExitNotFound      = 127
	ExitNotExecutable = 126
)

// Error is a command that could not be started, with the exit code a shell
// would give for it.
type Error struct {
	Msg  string
	Code int
}

func (e *Error) Error() string { return e.Msg }

// ExitCode is the code for err from Start: 127, 126, or 126 for anything else.
func ExitCode(err error) int {
	var se *Error
	if errors.As(err, &se) {
		return se.Code
	}
	return ExitNotExecutable
}

// Start runs argv in a new process group and returns its PID. extra files
// become descriptors 3, 4, … of the command, as with exec.Cmd.ExtraFiles.
// When drainit's group owns the terminal on stdin, the new group gets it, so
// that Ctrl-C and Ctrl-Z reach the command directly.
//
// A non-zero orphaned is the signal the command gets if drainit dies first
// (PR_SET_PDEATHSIG). The kernel sends it when the thread that forked exits,
// not the process; a Go thread only exits when a goroutine locked to it
// does, which drainit never does, so the two are the same here.
func Start(argv []string, orphaned syscall.Signal, extra ...*os.File) (int, error) {
	path, err := lookPath(argv[0])
	if err != nil {
		return 0, err
	}

	// Hand the terminal over only if drainit has it: taking it from a shell
	// that started drainit in the background would be rude. ENOTTY (no
	// terminal, or not ours) simply means there is nothing to hand over.
	fg := false
	if pg, err := unix.IoctlGetInt(0, unix.TIOCGPGRP); err == nil && pg == unix.Getpgrp() {
		fg = true
	}

	files := []uintptr{0, 1, 2}
	for _, f := range extra {
		files = append(files, f.Fd())
	}
	attr := &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: files,
		Sys:   &syscall.SysProcAttr{Setpgid: true, Foreground: fg, Ctty: 0, Pdeathsig: orphaned},
	}
	// The Go handlers that signals.Catch installed for SIGTTIN and SIGTTOU
	// make the child start with their default action, as drainit itself
	// did. Only after the fork does drainit ignore them, so that writing a
	// log line while the command owns the terminal cannot stop drainit.
	pid, err := forkExec(path, argv, attr)
	signal.Ignore(syscall.SIGTTIN, syscall.SIGTTOU)
	return pid, err
}
