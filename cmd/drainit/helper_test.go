package main_test

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary doubles as the app that drainit supervises, in the manner
// of dumb-init's print_signals: DRAINIT_TEST_HELPER picks what it does.
const helperEnv = "DRAINIT_TEST_HELPER"

// helperMain runs instead of the tests when the binary is a helper.
func helperMain(mode string, args []string) int {
	switch mode {
	case "signals":
		return printSignals(os.Getenv("HELPER_EXIT_ON"))
	case "exit":
		n, _ := strconv.Atoi(args[0])
		return n
	case "launch":
		return launchIgnoring(args)
	case "job":
		return job(args[0], args[1], args[2])
	case "pjob":
		return pjob(args[0], args[1], args[2])
	case "spawn":
		return spawnLater(args)
	case "churn":
		return churn(args)
	case "exhaust-inotify":
		return exhaustInotify()
	case "ignterm":
		signal.Ignore(syscall.SIGTERM)
		fmt.Printf("ignoring TERM pid=%d\n", os.Getpid())
		return execArgs(args)
	}
	fmt.Fprintf(os.Stderr, "unknown helper mode %q\n", mode)
	return 99
}

// printSignals prints "ready", then "signal N" for every signal it gets.
// It exits 0 after printing a signal named in exitOn ("15,2").
func printSignals(exitOn string) int {
	c := make(chan os.Signal, 64)
	var all []os.Signal
	for s := syscall.Signal(1); s < 32; s++ {
		// Not SIGPIPE: with its stdout gone the helper should die, not
		// print "signal 13" into the broken pipe forever.
		if s != syscall.SIGKILL && s != syscall.SIGSTOP && s != syscall.SIGPIPE {
			all = append(all, s)
		}
	}
	signal.Notify(c, all...)
	fmt.Printf("ready pid=%d pgid=%d ppid=%d\n", os.Getpid(), unix.Getpgrp(), os.Getppid())
	exits := map[int]bool{}
	for _, f := range strings.Split(exitOn, ",") {
		if n, err := strconv.Atoi(f); err == nil {
			exits[n] = true
		}
	}
	for s := range c {
		n := int(s.(syscall.Signal))
		fmt.Printf("signal %d\n", n)
		if exits[n] {
			return 0
		}
	}
	return 0
}

// job is a background job that holds a lock file of its own making for a
// while: args are the lock path, the duration and a label. With
// HELPER_AFTER set, the duration counts from when that file exists.
func job(lock, dur, label string) int {
	d, err := time.ParseDuration(dur)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 96
	}
	if err := os.WriteFile(lock, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 96
	}
	fmt.Printf("job %s started\n", label)
	if after := os.Getenv("HELPER_AFTER"); after != "" {
		// The work counts from when this file appears (drainit's drain
		// marker): a job that must still be running when the drain starts
		// does not race a loaded machine to it.
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if _, err := os.Stat(after); err == nil {
				break
			}
		}
	}
	time.Sleep(d) // the job's work
	fmt.Printf("job %s done\n", label)
	os.Remove(lock)
	return 0
}

// pjob is a background job that writes no lock file: only its process
// says that it runs. args are a word to match it by (--job), the duration
// and a label; the word stays in its command line. With HELPER_AFTER set,
// the duration counts from when that file exists; with HELPER_MARK set,
// it creates that file first thing. On SIGTERM it says so and exits.
func pjob(word, dur, label string) int {
	d, err := time.ParseDuration(dur)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 96
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	if mark := os.Getenv("HELPER_MARK"); mark != "" {
		os.WriteFile(mark, nil, 0o644)
	}
	fmt.Printf("pjob %s started pid=%d\n", label, os.Getpid())
	if after := os.Getenv("HELPER_AFTER"); after != "" {
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if _, err := os.Stat(after); err == nil {
				break
			}
		}
	}
	select {
	case <-time.After(d): // the job's work
		fmt.Printf("pjob %s done\n", label)
	case <-term:
		fmt.Printf("pjob %s got TERM\n", label)
	}
	return 0
}

// spawnLater waits for the file HELPER_AFTER names (the drain marker),
// then starts a pjob matched by the word in $W, with args (duration,
// label) and HELPER_MARK passed on, and exits without waiting: a job
// started during the drain, orphaned at once. Its own command line does
// not hold the word.
func spawnLater(args []string) int {
	after := os.Getenv("HELPER_AFTER")
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(after); err == nil {
			break
		}
	}
	self, _ := os.Executable()
	cmd := exec.Command(self, append([]string{os.Getenv("W")}, args...)...)
	cmd.Env = append(os.Environ(), helperEnv+"=pjob", "HELPER_AFTER=")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 95
	}
	return 0
}

// exhaustInotify opens inotify instances until the kernel refuses, then
// holds them until stdin closes.
func exhaustInotify() int {
	n := 0
	for {
		if _, err := unix.InotifyInit1(unix.IN_CLOEXEC); err != nil {
			fmt.Printf("exhausted after %d: %v\n", n, err)
			break
		}
		n++
	}
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// launchIgnoring execs args with SIGINT ignored and SIGUSR2 blocked, the way a
// shell script or a parent with its own mask would start drainit.
func launchIgnoring(args []string) int {
	signal.Ignore(syscall.SIGINT)
	runtime.LockOSThread()
	var set unix.Sigset_t
	set.Val[0] |= 1 << (uint(syscall.SIGUSR2) - 1)
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, &set, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 98
	}
	return execArgs(args)
}

func execArgs(args []string) int {
	path, err := exec.LookPath(args[0])
	if err == nil {
		err = syscall.Exec(path, args, os.Environ())
	}
	fmt.Fprintln(os.Stderr, err)
	return 97
}

// churn is a busy app's stream of short jobs during a drain: once the
// file HELPER_AFTER names exists (the drain marker), it makes and removes
// lock files in args[0], HELPER_LOCKS of them, 10 at a time, and starts
// HELPER_PROCS jobs of 300ms that --job matches by the word in $W, which
// its own command line does not hold, all spread over HELPER_FOR.
// Then it prints "churn done N" and exits.
func churn(args []string) int {
	dir := args[0]
	nLocks, _ := strconv.Atoi(os.Getenv("HELPER_LOCKS"))
	nProcs, _ := strconv.Atoi(os.Getenv("HELPER_PROCS"))
	spread, _ := time.ParseDuration(os.Getenv("HELPER_FOR"))
	after := os.Getenv("HELPER_AFTER")
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(after); err == nil {
			break
		}
	}
	self, _ := os.Executable()
	var procs []*exec.Cmd
	const batch = 10
	batches := max(1, (nLocks+batch-1)/batch)
	every := max(1, batches/max(1, nProcs))
	t0 := time.Now()
	for b := 0; b < batches || len(procs) < nProcs; b++ {
		if len(procs) < nProcs && b%every == 0 {
			cmd := exec.Command(self, os.Getenv("W"), "300ms", strconv.Itoa(len(procs)))
			cmd.Env = append(os.Environ(), helperEnv+"=pjob", "HELPER_AFTER=", "HELPER_MARK=")
			if err := cmd.Start(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 95
			}
			procs = append(procs, cmd)
		}
		// Each batch lives until the next one is made, long enough for
		// drainit's scans to see most of them.
		for j := b * batch; j < (b+1)*batch && j < nLocks; j++ {
			os.WriteFile(fmt.Sprintf("%s/churn-%d.lock", dir, j), nil, 0o644)
		}
		for j := (b - 1) * batch; j >= 0 && j < b*batch && j < nLocks; j++ {
			os.Remove(fmt.Sprintf("%s/churn-%d.lock", dir, j))
		}
		// The pace of a busy app, not a wait for anything.
		time.Sleep(time.Until(t0.Add(spread * time.Duration(b+1) / time.Duration(batches))))
	}
	for j := (batches - 1) * batch; j < nLocks; j++ {
		os.Remove(fmt.Sprintf("%s/churn-%d.lock", dir, j))
	}
	for _, cmd := range procs {
		cmd.Wait()
	}
	fmt.Printf("churn done %d\n", nLocks+len(procs))
	return 0
}
