package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

type child struct {
	pid        int
	foreground bool // the app's group owns the terminal
}

// startError carries the exit code a shell would give for the failure.
type startError struct {
	msg  string
	code int
}

func (e *startError) Error() string { return e.msg }

func exitCodeForStart(err error) int {
	var se *startError
	if errors.As(err, &se) {
		return se.code
	}
	return ExitNotExecutable
}

// start runs argv in a process group of its own. No exec.Cmd: its Wait
// would race the reaper's wait4(-1) for the app's status.
func start(argv []string) (child, error) {
	path := argv[0]
	if !strings.Contains(path, "/") {
		p, err := exec.LookPath(path)
		if err != nil {
			if errors.Is(err, fs.ErrPermission) {
				return child{}, &startError{fmt.Sprintf("%s: permission denied", path), ExitNotExecutable}
			}
			return child{}, &startError{fmt.Sprintf("%s: command not found in PATH", path), ExitNotFound}
		}
		path = p
	}

	// Hand the terminal to the app only if drainit has it: stealing it from
	// a shell that started drainit in the background would be rude.
	fg := false
	if pg, err := unix.IoctlGetInt(0, unix.TIOCGPGRP); err == nil && pg == unix.Getpgrp() {
		fg = true
	}

	attr := &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Foreground: fg, Ctty: 0},
	}
	// The handlers that signals.Catch installed for SIGTTIN and SIGTTOU make
	// the child start with their default action, as drainit itself did.
	// Only after the fork does drainit ignore them, so that writing a log
	// line while the app owns the terminal cannot stop it.
	pid, err := syscall.ForkExec(path, argv, attr)
	signal.Ignore(syscall.SIGTTIN, syscall.SIGTTOU)
	if err != nil {
		code := ExitNotExecutable
		if errors.Is(err, syscall.ENOENT) {
			code = ExitNotFound
		}
		return child{}, &startError{fmt.Sprintf("%s: %v", argv[0], err), code}
	}
	return child{pid: pid, foreground: fg}, nil
}

func commandLine(argv []string) string { return strings.Join(argv, " ") }
