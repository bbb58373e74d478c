package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// job is a background job: args are its name, how long it works in
// seconds, and the lock file it writes itself, if any (a job run under
// `drainit lock` has its lock made for it).
func job(args []string) int {
	if len(args) < 2 || len(args) > 3 {
		fmt.Fprintln(os.Stderr, "demo: usage: demo job NAME SECONDS [LOCK]")
		return 2
	}
	name := args[0]
	secs, err := strconv.ParseFloat(args[1], 64)
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: job %s: %v\n", name, err)
		return 2
	}
	lock := ""
	if len(args) == 3 {
		lock = args[2]
		// O_EXCL: two jobs of one name would otherwise share a lock, and
		// the first to end would release the other's.
		f, err := os.OpenFile(lock, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			fmt.Fprintf(os.Stderr, "demo: job %s: %v\n", name, err)
			return 1
		}
		fmt.Fprintf(f, "%d\n", os.Getpid())
		f.Close()
	}
	// Caught only to say so in the log: a job that drainit has to give
	// up on ends with the SIGTERM it gets after the app has stopped.
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	start := time.Now()
	say("demo: job %s started (pid %d, %gs, lock %s)", name, os.Getpid(), secs, lockName(lock))
	select {
	case <-time.After(time.Duration(secs * float64(time.Second))): // the job's work
		// Said before the lock goes: once it is gone, drainit may stop
		// the app at once.
		say("demo: job %s finished after %s", name, time.Since(start).Round(time.Millisecond))
		if lock != "" {
			os.Remove(lock)
		}
		return 0
	case sig := <-term:
		say("demo: job %s interrupted by %s after %s: its work is lost", name, sigName(sig), time.Since(start).Round(time.Millisecond))
		if lock != "" {
			os.Remove(lock)
		}
		return 128 + int(sig.(syscall.Signal))
	}
}

// say writes a line to stderr, where the app and drainit write theirs: one
// pipe keeps the lines in the order they were written (docker logs reads
// stdout and stderr apart, and interleaves them as it gets them).
func say(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

func lockName(lock string) string {
	if lock == "" {
		return "held by drainit lock"
	}
	return lock
}

// detach starts a command and exits without waiting for it, the part of
// `sh -c 'job &'` that a FROM scratch image has no sh for.
func detach(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "demo: usage: demo detach COMMAND [ARG...]")
		return 2
	}
	path, err := exec.LookPath(args[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return 127
	}
	if _, err := os.StartProcess(path, args, &os.ProcAttr{Files: []*os.File{os.Stdin, os.Stdout, os.Stderr}}); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return 126
	}
	return 0
}
