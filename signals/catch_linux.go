package signals

import (
	"bufio"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

// Caught is what a process receives for its whole life once Catch has run.
// Its fields are plain channels so that a test can build one and feed it.
type Caught struct {
	// All carries every caught signal except SIGCHLD.
	All <-chan os.Signal
	// Child carries SIGCHLD on a channel of its own, so that a burst of
	// other signals filling All can never make the reaper miss one.
	Child <-chan os.Signal
	// Ignored holds the signals the process was started with ignored and
	// that stay ignored (see Catch).
	Ignored []syscall.Signal
}

// Catch installs a handler for every catchable signal, for the rest of the
// process's life, and must run before anything else in main: a Go program
// that is PID 1 and has no handler for SIGTERM is killed with status 2 when
// the runtime's default handler re-raises it.
//
// A signal the process was started with ignored stays ignored, for drainit
// and for the app it starts, as nohup and "cmd &" in a script expect. Only
// SIGHUP, SIGINT and the job-control signals can be seen that way: the Go
// runtime installs its own handler over an inherited SIG_IGN for the others
// before main runs, and their start disposition is lost.
func Catch() *Caught {
	ignored := ignoredAtStart()
	all := make(chan os.Signal, 256)
	child := make(chan os.Signal, 1)
	var keep []syscall.Signal
	var want []os.Signal
	for _, sig := range All() {
		if ignored[sig] {
			keep = append(keep, sig)
			continue
		}
		switch sig {
		case syscall.SIGCHLD:
			continue
		case syscall.SIGURG, syscall.SIGPROF:
			// The runtime sends itself SIGURG to preempt goroutines and
			// uses SIGPROF for profiling; asking for them would only
			// wake drainit for nothing. Its handler is installed all the
			// same, so the app still starts with the default action.
			continue
		}
		want = append(want, sig)
	}
	signal.Notify(child, syscall.SIGCHLD)
	signal.Notify(all, want...)
	return &Caught{All: all, Child: child, Ignored: keep}
}

// ignoredAtStart reads the SigIgn mask of /proc/self/status. A missing /proc
// (a chroot without it) leaves the set empty: every signal is then caught.
func ignoredAtStart() map[syscall.Signal]bool {
	out := map[syscall.Signal]bool{}
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "SigIgn:")
		if !ok {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return out
		}
		for s := syscall.Signal(1); s <= Max; s++ {
			if mask&(1<<(uint(s)-1)) != 0 {
				out[s] = true
			}
		}
	}
	return out
}
