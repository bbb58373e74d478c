package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/drainit/drainit/internal/benchapp"
)

// churnLines counts the lines drainit logs at its default level, info, in
// one drain held open by one lock while a busy app's jobs come and go
// (issue 17): "short jobs", jobs started at an even pace that each hold
// their lock 20 ms, and "heavy churn", 8 writers making and removing lock
// files as fast as they can. The drain lasts -churn-for; one lock files
// made and removed is two events. With -baseline, that drainit binary is
// measured the same way in the same run, one drain of each in turn.
func churnLines(c *config, t *table) error {
	bins := []struct{ path, suffix string }{{c.drainit, ""}}
	if c.baseline != "" {
		bins = append(bins, struct{ path, suffix string }{c.baseline, " (-baseline)"})
	}
	for _, kind := range []string{"short", "heavy"} {
		lines := make([][]int, len(bins))
		events := make([][]int, len(bins))
		cpu := make([][]time.Duration, len(bins))
		for range c.churnRuns {
			for i, b := range bins {
				n, ev, used, err := churnOnce(c, b.path, kind)
				if err != nil {
					return err
				}
				cpu[i] = append(cpu[i], used)
				lines[i] = append(lines[i], n)
				events[i] = append(events[i], ev)
			}
		}
		for i, b := range bins {
			what := fmt.Sprintf("%d short jobs in %v", c.churnJobs, c.churnFor)
			if kind == "heavy" {
				what = fmt.Sprintf("heavy churn for %v", c.churnFor)
				// How many the writers make depends on the CPU they get
				// beside drainit: said, not hidden.
				t.notes = append(t.notes, fmt.Sprintf("heavy churn%s: %s lock events made per drain, median (each file made and removed is two; drainit sees those that live across one of its scans)", b.suffix, thousands(medianInt(events[i]))))
			}
			row := fmt.Sprintf("log lines per drain, %s, median%s", what, b.suffix)
			m := medianInt(lines[i])
			t.set(row, colDrainit, float64(m), thousands(m))
			t.setDur(fmt.Sprintf("CPU time per drain of drainit and its (idle) app, %s, median%s", what, b.suffix), colDrainit, median(cpu[i]))
		}
	}
	return nil
}

// churnOnce runs one drain under churn and returns how many lines drainit
// wrote from its start to its exit, how many lock events were made, and
// the CPU time drainit used (user and system, its reaped app included).
func churnOnce(c *config, bin, kind string) (lines, events int, cpu time.Duration, err error) {
	dir, err := os.MkdirTemp(c.work, "churn")
	if err != nil {
		return 0, 0, 0, err
	}
	defer os.RemoveAll(dir)
	hold := filepath.Join(dir, "hold.lock")
	if err := os.WriteFile(hold, nil, 0o644); err != nil {
		return 0, 0, 0, err
	}
	cmd := exec.Command(bin, "--lock", dir+"/*.lock", "--grace", "5m", "--", c.self)
	cmd.Env = append(os.Environ(), benchapp.Env+"=stamp")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, 0, 0, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return 0, 0, 0, err
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := start(cmd); err != nil {
		return 0, 0, 0, err
	}
	w.Close()
	defer func() {
		stdin.Close()
		cmd.Process.Kill() // when all went well, it has exited already
		cmd.Wait()
	}()
	// Every line is read and counted, so that drainit never blocks on the
	// pipe; only the few waited for are passed on.
	var count atomic.Int64
	wanted := make(chan string, 8)
	eof := make(chan struct{})
	go func() {
		defer close(eof)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			l := sc.Text()
			if strings.HasPrefix(l, "drainit ") {
				count.Add(1)
			}
			if l == "ready" || strings.HasPrefix(l, "stop ") || strings.Contains(l, " draining by=") {
				wanted <- l
			}
		}
	}()
	next := func(prefix string) error {
		select {
		case l := <-wanted:
			if !strings.HasPrefix(l, prefix) {
				return fmt.Errorf("got %q, want %q", l, prefix)
			}
			return nil
		case <-time.After(time.Minute):
			return fmt.Errorf("no %q line within a minute", prefix)
		}
	}
	if err := next("ready"); err != nil {
		return 0, 0, 0, err
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, 0, 0, err
	}
	if err := next("drainit"); err != nil {
		return 0, 0, 0, err
	}
	if kind == "heavy" {
		events = heavyChurn(dir, c.churnFor)
	} else {
		events = benchapp.ShortJobs(dir, c.churnJobs, c.churnFor)
	}
	if err := os.Remove(hold); err != nil {
		return 0, 0, 0, err
	}
	if err := next("stop "); err != nil {
		return 0, 0, 0, err
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		return 0, 0, 0, fmt.Errorf("drainit: %w", err)
	}
	<-eof
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return int(count.Load()), events, cpu, nil
}

// heavyChurn has 8 writers make and remove lock files as fast as they can
// for d, and returns how many lock events they made.
func heavyChurn(dir string, d time.Duration) int {
	var wg sync.WaitGroup
	var events atomic.Int64
	end := time.Now().Add(d)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(end); i++ {
				p := fmt.Sprintf("%s/w%d-%d.lock", dir, w, i)
				os.WriteFile(p, nil, 0o644)
				os.Remove(p)
				events.Add(2)
			}
		}()
	}
	wg.Wait()
	return int(events.Load())
}

func medianInt(xs []int) int {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// thousands writes 159000 as 159,000.
func thousands(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
