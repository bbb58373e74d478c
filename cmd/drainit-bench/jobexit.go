package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/drainit/drainit/internal/benchapp"
)

// jobExitToStop times the jobs that write no lock file (issue 16): from
// the last job's exit to the app's stop signal, taken inside the app, with
// drainit as PID 1 of a namespace, as in a container. The job is the app's
// child matched by --job (its end comes through a pidfd) or an orphan
// counted by --orphans (through the reaper). Its exit is the moment this
// program's own pidfd of it turns readable: how long the job takes to
// exit once told is its own. Run beside the release measure, one after
// the other, so the two are taken under the same load.
func jobExitToStop(c *config, t *table) error {
	for _, kind := range []string{"job", "orphans"} {
		var took []time.Duration
		for range c.releaseRuns {
			d, err := jobExitOnce(c, kind)
			if err != nil {
				return err
			}
			took = append(took, d)
		}
		row := "last job's exit → stop signal, --job, PID 1, p50"
		if kind == "orphans" {
			row = "last job's exit → stop signal, --orphans, PID 1, p50"
		}
		t.setDur(row, colDrainit, quantile(took, 0.5))
	}
	return nil
}

func jobExitOnce(c *config, kind string) (time.Duration, error) {
	dir, err := os.MkdirTemp(c.work, "jobexit")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	fifo := filepath.Join(dir, "job.fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		return 0, err
	}
	word := fmt.Sprintf("benchjob%d", os.Getpid())
	rule, job := []string{"--job", word}, "child"
	if kind == "orphans" {
		rule, job = []string{"--orphans"}, "orphan"
	}
	argv := append(append(append(append([]string{}, c.unshare...), c.drainit), rule...), "--grace", "30s", "--", c.self)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), benchapp.Env+"=stamp", "BENCH_JOB="+job, "BENCH_WORD="+word, "BENCH_FIFO="+fifo)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := start(cmd); err != nil {
		return 0, err
	}
	w.Close()
	defer func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	}()
	next := expectLines(r, func(l string) bool {
		return l == "ready" || l == "job" || strings.HasPrefix(l, "stop ") || strings.Contains(l, " draining by=")
	})
	// "ready" and "job" come in either order.
	for range 2 {
		if _, err := next(""); err != nil {
			return 0, err
		}
	}
	// unshare's child is drainit, PID 1 of the namespace.
	kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
	if err != nil || len(strings.Fields(string(kids))) == 0 {
		return 0, fmt.Errorf("unshare has no child: %v", err)
	}
	pid1, _ := strconv.Atoi(strings.Fields(string(kids))[0])
	if err := syscall.Kill(pid1, syscall.SIGTERM); err != nil {
		return 0, err
	}
	if _, err := next("drainit"); err != nil {
		return 0, err
	}
	pidfd, err := pidfdOf(c.self + " " + word)
	if err != nil {
		return 0, err
	}
	defer unix.Close(pidfd)
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	f.Close()
	if _, err := unix.Poll([]unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}, 30_000); err != nil {
		return 0, err
	}
	exited := time.Now().UnixNano()
	l, err := next("stop ")
	if err != nil {
		return 0, err
	}
	at, err := strconv.ParseInt(strings.TrimPrefix(l, "stop "), 10, 64)
	if err != nil {
		return 0, err
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		return 0, fmt.Errorf("drainit: %w", err)
	}
	for { // to the end of the output, which drainit's exit closes
		if _, err := next(""); err != nil {
			break
		}
	}
	return time.Duration(at - exited), nil
}

// pidfdOf opens a pidfd of the one process whose command line is cmdline,
// found in this program's /proc, where a namespace's processes show too.
func pidfdOf(cmdline string) (int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if strings.TrimRight(strings.ReplaceAll(string(b), "\x00", " "), " ") == cmdline {
			return unix.PidfdOpen(pid, 0)
		}
	}
	return 0, fmt.Errorf("no process with the command line %q", cmdline)
}
