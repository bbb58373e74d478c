package main_test

import (
	"fmt"
	"io"
	"os"
	"os/signal"
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
	fmt.Println("ready")
	<-c
	at := time.Now().UnixNano()
	fmt.Printf("stop %d\n", at)
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}
