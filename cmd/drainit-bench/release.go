package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/drainit/drainit/internal/benchapp"
)

// releaseToStop times, inside the app, the wait from the last lock's
// removal to its stop signal: with one lock, and with 10,000 in 100
// directories, where drainit's peak RSS is read too. drainit runs as this
// program's child, in subreaper mode.
func releaseToStop(c *config, t *table) error {
	dir := filepath.Join(c.work, "release")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	one := []string{filepath.Join(dir, "job.lock")}
	var took []time.Duration
	for range c.releaseRuns {
		d, _, err := drainOnce(c, dir+"/*.lock", one)
		if err != nil {
			return err
		}
		took = append(took, d)
	}
	t.setDur("release → stop signal, 1 lock, p50", colDrainit, quantile(took, 0.5))
	t.setDur("release → stop signal, 1 lock, p99", colDrainit, quantile(took, 0.99))

	root := filepath.Join(c.work, "release10k")
	var many []string
	for d := range 100 {
		sub := filepath.Join(root, fmt.Sprintf("app%03d", d))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return err
		}
		for f := range 100 {
			many = append(many, filepath.Join(sub, fmt.Sprintf("job%03d.lock", f)))
		}
	}
	took = took[:0]
	var peak int64
	for range c.release10kRuns {
		d, hwm, err := drainOnce(c, root+"/*/*.lock", many)
		if err != nil {
			return err
		}
		took = append(took, d)
		peak = max(peak, hwm)
	}
	t.setDur("release → stop signal, 10k locks, p50", colDrainit, quantile(took, 0.5))
	t.setDur("release → stop signal, 10k locks, max", colDrainit, quantile(took, 1))
	t.setMiB("peak RSS draining 10k locks", colDrainit, peak)
	return nil
}

// drainOnce creates the locks, starts drainit with the stamp app, sends
// SIGTERM, removes the locks once drainit drains, and returns the time from
// the last removal to the app's stop signal and drainit's VmHWM in bytes.
func drainOnce(c *config, pattern string, locks []string) (time.Duration, int64, error) {
	content := []byte(strconv.Itoa(os.Getpid()) + "\n")
	for _, l := range locks {
		if err := os.WriteFile(l, content, 0o644); err != nil {
			return 0, 0, err
		}
	}
	cmd := exec.Command(c.drainit, "--lock", pattern, "--grace", "30s", "--", c.self)
	cmd.Env = append(os.Environ(), benchapp.Env+"=stamp")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, 0, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return 0, 0, err
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := start(cmd); err != nil {
		return 0, 0, err
	}
	w.Close()
	defer func() {
		stdin.Close()
		cmd.Process.Kill() // when all went well, it has exited already
		cmd.Wait()
	}()

	// 10,000 "released" lines are read and dropped.
	next := expectLines(r, func(l string) bool {
		return l == "ready" || strings.HasPrefix(l, "stop ") || strings.Contains(l, " draining by=")
	})
	if _, err := next("ready"); err != nil {
		return 0, 0, err
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, 0, err
	}
	// Said once the watches are set and the first scan is done.
	if _, err := next("drainit"); err != nil {
		return 0, 0, err
	}
	var last int64
	for _, l := range locks {
		last = time.Now().UnixNano()
		if err := os.Remove(l); err != nil {
			return 0, 0, err
		}
	}
	l, err := next("stop ")
	if err != nil {
		return 0, 0, err
	}
	at, err := strconv.ParseInt(strings.TrimPrefix(l, "stop "), 10, 64)
	if err != nil {
		return 0, 0, err
	}
	hwm, err := statusKB(cmd.Process.Pid, "VmHWM:")
	if err != nil {
		return 0, 0, err
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		return 0, 0, fmt.Errorf("drainit: %w", err)
	}
	for { // to the end of the output, which drainit's exit closes
		if _, err := next(""); err != nil {
			break
		}
	}
	return time.Duration(at - last), hwm << 10, nil
}

// expectLines reads r in the background and passes on only the lines that
// keep accepts, so that drainit never blocks on a full pipe however much it
// logs. next returns the next kept line, which must start with prefix.
func expectLines(r io.Reader, keep func(string) bool) (next func(prefix string) (string, error)) {
	lines := make(chan string, 8)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if l := sc.Text(); keep(l) {
				lines <- l
			}
		}
	}()
	return func(prefix string) (string, error) {
		select {
		case l, ok := <-lines:
			if !ok {
				return "", fmt.Errorf("drainit's output ended before %q", prefix)
			}
			if !strings.HasPrefix(l, prefix) {
				return "", fmt.Errorf("got %q, want %q", l, prefix)
			}
			return l, nil
		case <-time.After(30 * time.Second):
			return "", fmt.Errorf("no %q line within 30s", prefix)
		}
	}
}
