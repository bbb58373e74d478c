// Command sigblock runs a command with signals blocked, the way a CI runner
// or a supervisor can hand a blocked mask down to everything it starts:
//
//	sigblock TERM,USR1,INT,HUP -- go test ./cmd/drainit/
//
// CI runs the signal-sensitive tests under it (and under nohup) so that a
// test which counts on the signal state of the shell that started it fails
// there, not on the next person's machine. The shell cannot do this itself:
// bash has no way to block a signal for the commands it runs, only to ignore
// one (a trap with an empty action), which nohup already does for SIGHUP.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/drainit/drainit/signals"
)

func main() {
	if len(os.Args) < 4 || os.Args[2] != "--" {
		fmt.Fprintln(os.Stderr, "usage: sigblock SIG[,SIG...] -- COMMAND [ARG...]")
		os.Exit(2)
	}
	sigs, err := signals.ParseList(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "sigblock:", err)
		os.Exit(2)
	}
	var set unix.Sigset_t
	for _, s := range sigs {
		set.Val[(s-1)/64] |= 1 << (uint(s-1) % 64)
	}
	// The mask is per thread and execve keeps the calling thread's: block
	// and exec on the same one.
	runtime.LockOSThread()
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, &set, nil); err != nil {
		fmt.Fprintln(os.Stderr, "sigblock:", err)
		os.Exit(1)
	}
	args := os.Args[3:]
	path, err := exec.LookPath(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "sigblock:", err)
		os.Exit(127)
	}
	err = syscall.Exec(path, args, os.Environ())
	fmt.Fprintln(os.Stderr, "sigblock:", err)
	os.Exit(126)
}
