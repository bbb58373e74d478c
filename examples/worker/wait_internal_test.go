package main

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A job whose process finished before the stop, but which the worker had
// not reaped yet, counts as finished, not interrupted: drainit sees a
// job's end through a pidfd and may stop the worker first
// (TestQuietThenStop/processes met this under CI's load).
func TestWaitProcessKeepsAFinishedJob(t *testing.T) {
	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	for range 20 {
		cmd := exec.Command("true")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		zombie(t, cmd.Process.Pid)
		if err := waitProcess(stopped, cmd); err != nil {
			t.Fatalf("the stop came after the job's process had exited 0: %v, want nil (finished)", err)
		}
	}
}

// zombie waits until pid has exited and waits to be reaped.
func zombie(t *testing.T, pid int) {
	t.Helper()
	path := "/proc/" + strconv.Itoa(pid) + "/stat"
	for deadline := time.Now().Add(10 * time.Second); ; {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && strings.HasPrefix(string(b[i+1:]), " Z") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d has not exited after 10s: %s", pid, b)
		}
		time.Sleep(time.Millisecond) // polling the process's exit
	}
}
