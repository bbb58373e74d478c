package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The benchmark re-runs its own binary as the processes it measures with:
// the app of the scale-down and its jobs, and the orphan maker of the reap
// measure; roleEnv picks one. The app of the other measures is
// internal/benchapp's, shared with cmd/drainit's Go benchmarks.
const roleEnv = "DRAINIT_BENCH_ROLE"

func runRole(role string, args []string) int {
	var err error
	switch role {
	case "app":
		err = app(args)
	case "job":
		err = job(args)
	case "orphans":
		err = orphans(args)
	case "spawner":
		err = spawner(args)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "drainit-bench %s: %v\n", role, err)
		return 1
	}
	return 0
}

// app is the web app of the scenario: it starts its jobs the way PHP's
// exec("job &") does, through a shell that backgrounds them and exits, so
// each job is orphaned to PID 1 while it stays in the app's process group;
// then it serves until SIGTERM or SIGINT, notes when it got it and exits 0,
// a graceful stop.
// Arguments: lock dir, done dir, go file, pod, then one duration per job.
func app(args []string) error {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	lockDir, doneDir, goFile, pod := args[0], args[1], args[2], args[3]
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var script strings.Builder
	for i, d := range args[4:] {
		fmt.Fprintf(&script, `"$0" %s/job-%d.lock %s/%s-%d %s %s & `, lockDir, i, doneDir, pod, i, goFile, d)
	}
	sh := exec.Command("sh", "-c", script.String(), self)
	sh.Env = append(os.Environ(), roleEnv+"=job")
	sh.Stdout, sh.Stderr = os.Stdout, os.Stderr
	if err := sh.Run(); err != nil {
		return err
	}
	<-c
	// When the stop reached the app, apart from how long the app then
	// takes to exit, which a loaded machine can stretch.
	at := strconv.FormatInt(time.Now().UnixNano(), 10)
	return os.WriteFile(filepath.Join(doneDir, pod+"-app"), []byte(at), 0o644)
}

// job holds its lock file from its start; once the benchmark has written
// the go file, the moment every pod is told to stop, it works for its
// duration more, then writes when it finished into its done file and
// releases the lock: a job with a done file was not lost. So every job is
// midway when the stop comes, however slowly the pods started. SIGTERM kills
// it, as it does a PHP CLI job. Arguments: lock file, done file, go file,
// duration.
func job(args []string) error {
	lock, done, goFile := args[0], args[1], args[2]
	d, err := time.ParseDuration(args[3])
	if err != nil {
		return err
	}
	if err := os.WriteFile(lock, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	var t0 int64
	for {
		// Polled before the stop, at a pace that costs nothing; after it,
		// the job's end is an absolute time, which the poll does not move.
		if b, err := os.ReadFile(goFile); err == nil {
			if t0, err = strconv.ParseInt(string(b), 10, 64); err != nil {
				return err
			}
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Until(time.Unix(0, t0).Add(d))) // the job's work
	at := time.Now().UnixNano()
	if err := os.WriteFile(done, []byte(strconv.FormatInt(at, 10)), 0o644); err != nil {
		return err
	}
	return os.Remove(lock)
}

// orphans runs as the app under an init that is PID 1. It has a spawner
// start n processes that block on a pipe and exit, leaving them to PID 1,
// and prints "ready". The benchmark then stops PID 1 (SIGSTOP) and says
// "go": the app closes the pipe, waits until all n are zombies and prints
// "zombies"; the benchmark resumes PID 1 and times how long it takes to
// reap them. Then it says "done" and the app exits.
func orphans(args []string) error {
	n, err := strconv.Atoi(args[0])
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	sp := exec.Command(self, args[0])
	sp.Env = append(os.Environ(), roleEnv+"=spawner")
	sp.Stdin, sp.Stderr = r, os.Stderr
	if err := sp.Run(); err != nil {
		return fmt.Errorf("spawner: %w", err)
	}
	r.Close()
	// Every child of PID 1 but this app is one of the orphans.
	if got := len(children(1)) - 1; got != n {
		return fmt.Errorf("PID 1 has %d orphans, want %d", got, n)
	}
	in := bufio.NewScanner(os.Stdin)
	fmt.Println("ready")
	if !in.Scan() {
		return fmt.Errorf("no go")
	}
	w.Close()
	me := strconv.Itoa(os.Getpid())
	for {
		zombies := 0
		for _, pid := range children(1) {
			if pid != me && procState(pid) == 'Z' {
				zombies++
			}
		}
		if zombies == n {
			break
		}
		time.Sleep(time.Millisecond) // polling the orphans' exits
	}
	fmt.Println("zombies")
	in.Scan()
	return nil
}

// procState is the state letter of /proc/PID/stat.
func procState(pid string) byte {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0
	}
	return b[i+2]
}

// children lists pid's children, zombies included. Each thread has its own
// list: a Go init forks from whichever thread runs the goroutine.
func children(pid int) []string {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []string
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		out = append(out, strings.Fields(string(b))...)
	}
	return out
}

// spawner starts n copies of cat reading its stdin, the pipe, and exits
// without waiting for them.
func spawner(args []string) error {
	n, err := strconv.Atoi(args[0])
	if err != nil {
		return err
	}
	cat, err := exec.LookPath("cat")
	if err != nil {
		return err
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	attr := &syscall.ProcAttr{Files: []uintptr{0, null.Fd(), 2}}
	for range n {
		if _, err := syscall.ForkExec(cat, []string{filepath.Base(cat)}, attr); err != nil {
			return err
		}
	}
	return nil
}
