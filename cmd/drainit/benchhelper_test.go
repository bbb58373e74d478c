package main_test

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// benchHelperEnv makes the test binary a benchmark's app. It is read in an
// init function, before TestMain, so that helper_test.go's switch stays as
// it is.
const benchHelperEnv = "DRAINIT_BENCH_HELPER"

func init() {
	switch os.Getenv(benchHelperEnv) {
	case "":
		return
	case "stamp":
		os.Exit(stamp())
	case "job":
		os.Exit(benchJob())
	case "orphaner":
		os.Exit(startJob(true))
	default:
		fmt.Fprintf(os.Stderr, "unknown bench helper mode %q\n", os.Getenv(benchHelperEnv))
		os.Exit(99)
	}
}

// stamp prints "ready", then, on SIGTERM, "stop" and the wall-clock time it
// got the signal in Unix nanoseconds, taken first thing so that the pipe and
// the reader add nothing to the measured latency. It stays alive until its
// stdin closes, so that the benchmark can read drainit's peak RSS while
// drainit is still there.
func stamp() int {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM)
	// With BENCH_JOB, a job runs first: the app's child, or an orphan.
	switch os.Getenv("BENCH_JOB") {
	case "child":
		startJob(false)
	case "orphan":
		startJob(true)
	}
	fmt.Println("ready")
	<-c
	at := time.Now().UnixNano()
	fmt.Printf("stop %d\n", at)
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// startJob starts the benchmark's job, the test binary with the argument
// in BENCH_WORD for --job to match; orphaned, through a parent (this
// process, then) that exits at once.
func startJob(orphaned bool) int {
	self, _ := os.Executable()
	cmd := exec.Command(self, os.Getenv("BENCH_WORD"))
	mode := "job"
	if orphaned && os.Getenv(benchHelperEnv) != "orphaner" {
		mode = "orphaner"
	}
	cmd.Env = append(os.Environ(), benchHelperEnv+"="+mode, fmt.Sprintf("BENCH_PARENT=%d", os.Getpid()))
	if orphaned && mode == "job" {
		cmd.Env = append(cmd.Env, "BENCH_ORPHANED=1")
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 94
	}
	return 0
}

// benchJob says "job" once it is what the benchmark measures (adopted by
// drainit, when its parent was the orphaner), then runs until the FIFO in
// BENCH_FIFO is closed by its writer: the benchmark takes the time just
// before closing it.
func benchJob() int {
	if os.Getenv("BENCH_ORPHANED") != "" {
		parent, _ := strconv.Atoi(os.Getenv("BENCH_PARENT"))
		for os.Getppid() == parent {
			time.Sleep(time.Millisecond)
		}
	}
	fmt.Println("job")
	f, err := os.Open(os.Getenv("BENCH_FIFO"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 93
	}
	_, _ = io.Copy(io.Discard, f)
	return 0
}
