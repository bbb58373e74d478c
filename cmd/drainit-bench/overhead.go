package main

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// startToExit times `init -- /bin/true` from fork to reaped, the inits'
// runs interleaved so that a noisy moment hits them all alike. The inits run
// as plain processes (tini with -s, to be a subreaper as drainit makes
// itself); /bin/true alone is the floor, in the no-init column.
func startToExit(c *config, t *table) error {
	type candidate struct {
		col  string
		argv []string
		took []time.Duration
	}
	cands := []*candidate{{col: colNone, argv: []string{"/bin/true"}}}
	if c.tini != "" {
		cands = append(cands, &candidate{col: colTini, argv: []string{c.tini, "-s", "--", "/bin/true"}})
	}
	if c.dumbInit != "" {
		cands = append(cands, &candidate{col: colDumb, argv: []string{c.dumbInit, "--", "/bin/true"}})
	}
	cands = append(cands, &candidate{col: colDrainit, argv: []string{c.drainit, "--", "/bin/true"}})
	for range c.startRuns {
		for _, k := range cands {
			cmd := exec.Command(k.argv[0], k.argv[1:]...)
			begin := time.Now()
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("%s: %w", strings.Join(k.argv, " "), err)
			}
			k.took = append(k.took, time.Since(begin))
		}
	}
	for _, k := range cands {
		t.setDur("start-to-exit of `init -- /bin/true`, median", k.col, median(k.took))
	}
	return nil
}

// idleRun is the inits started at the beginning of the run, each PID 1 of
// its own namespace supervising `sleep infinity`, measured over the idle
// window. unshare's --kill-child ends the namespace if the run is cut short.
type idleRun struct {
	window time.Duration
	begin  time.Time
	procs  []*idleProc
	stop   func() // the API stub
}

type idleProc struct {
	col       string
	variant   string    // appended to the rows' names: a second drainit with other flags
	cmd       *exec.Cmd // unshare
	pid       int       // the init
	cpu0, cs0 int64
}

func startIdle(c *config) (*idleRun, error) {
	lockDir := filepath.Join(c.work, "idle", "lock")
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return nil, err
	}
	run := &idleRun{window: c.idle}
	var env []string // of the next add
	add := func(col string, argv ...string) error {
		argv = append(append(append([]string{}, c.unshare...), "--kill-child"), argv...)
		cmd := exec.Command(argv[0], append(argv[1:], "sleep", "infinity")...)
		cmd.Env = append(os.Environ(), env...)
		// Kept with -keep: the log tells whether --deletion-cost's writes
		// succeeded, which the idle figures depend on.
		logf, err := os.Create(filepath.Join(c.work, "idle", fmt.Sprintf("%d.log", len(run.procs))))
		if err != nil {
			return err
		}
		defer logf.Close()
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := start(cmd); err != nil {
			return err
		}
		run.procs = append(run.procs, &idleProc{col: col, cmd: cmd})
		return nil
	}
	if c.tini != "" {
		if err := add(colTini, c.tini, "--"); err != nil {
			return nil, err
		}
	}
	if c.dumbInit != "" {
		if err := add(colDumb, c.dumbInit, "--"); err != nil {
			return nil, err
		}
	}
	if err := add(colDrainit, c.drainit, "--lock", lockDir+"/*.lock", "--grace", c.grace.String(), "--"); err != nil {
		return nil, err
	}
	// The same with --deletion-cost, against a stand-in API server on
	// loopback: its idle cost includes the TLS client it keeps.
	api, err := startAPIStub(filepath.Join(c.work, "idle", "kube"))
	if err != nil {
		return nil, err
	}
	run.stop = api.Close
	env = api.env
	if err := add(colDrainit, c.drainit, "--deletion-cost", "--kube-dir", api.dir,
		"--lock", lockDir+"/*.lock", "--grace", c.grace.String(), "--"); err != nil {
		return nil, err
	}
	run.procs[len(run.procs)-1].variant = ", --deletion-cost"
	// The window starts once each init has started its app and settled.
	for _, p := range run.procs {
		deadline := time.Now().Add(10 * time.Second)
		for {
			if pid, err := firstChild(p.cmd.Process.Pid); err == nil && len(children(pid)) > 0 {
				p.pid = pid
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("%s did not start sleep", p.col)
			}
			time.Sleep(5 * time.Millisecond) // polling for the child
		}
	}
	// The first write of --deletion-cost, at start, is start-up work too.
	select {
	case <-api.patched:
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("drainit --deletion-cost wrote nothing to the stand-in API server within 30s; see %s with -keep", filepath.Join(c.work, "idle"))
	}
	time.Sleep(500 * time.Millisecond) // start-up work is not idle work
	run.begin = time.Now()
	for _, p := range run.procs {
		p.cpu0, p.cs0 = cpuAndSwitches(p.pid)
	}
	return run, nil
}

// finish waits for the end of the window and fills the idle rows.
func (r *idleRun) finish(t *table) error {
	time.Sleep(time.Until(r.begin.Add(r.window)))
	took := time.Since(r.begin)
	for _, p := range r.procs {
		cpu, cs := cpuAndSwitches(p.pid)
		rss, err := statusKB(p.pid, "VmRSS:")
		if err != nil {
			return fmt.Errorf("%s: %w", p.col, err)
		}
		t.setMiB("idle RSS"+p.variant, p.col, rss<<10)
		t.setDur(fmt.Sprintf("idle CPU time over %v%s", r.window, p.variant), p.col, time.Duration(cpu-p.cpu0))
		t.set("idle wakeups per minute"+p.variant, p.col, float64(cs-p.cs0)/took.Minutes(), fmt.Sprintf("%.1f", float64(cs-p.cs0)/took.Minutes()))
		// SIGTERM reaches sleep through the init, and the namespace ends.
		_ = syscall.Kill(p.pid, syscall.SIGTERM)
		_ = p.cmd.Wait()
	}
	if r.stop != nil {
		r.stop()
	}
	return nil
}

// cpuAndSwitches sums over pid's threads the time on a CPU (ns, from
// schedstat) and the context switches, each of which is a wakeup.
func cpuAndSwitches(pid int) (cpu, switches int64) {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	for _, task := range tasks {
		if b, err := os.ReadFile(task + "/schedstat"); err == nil {
			if f := strings.Fields(string(b)); len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				cpu += n
			}
		}
		b, err := os.ReadFile(task + "/status")
		if err != nil {
			continue
		}
		for line := range bytes.Lines(b) {
			for _, key := range []string{"voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"} {
				if v, ok := bytes.CutPrefix(line, []byte(key)); ok {
					n, _ := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
					switches += n
				}
			}
		}
	}
	return cpu, switches
}

// statusKB reads a kB field of /proc/PID/status, such as VmRSS or VmHWM.
func statusKB(pid int, key string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte(key)); ok {
			return strconv.ParseInt(string(bytes.Fields(v)[0]), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", key, pid)
}

// binarySize compares file sizes: drainit as built (static, stripped),
// tini-static where it is installed beside tini, dumb-init as installed.
// drainit ships for amd64 and arm64 (issue 18: Kubernetes nodes are both),
// so the other one is built and measured too, when drainit is built here.
func binarySize(c *config, t *table) error {
	size := func(col, path string) error {
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		label := fmt.Sprintf("%.2f MB", float64(fi.Size())/1e6)
		if !static(path) {
			label += " (dynamic)"
		} else if col != colDrainit {
			label += " (" + filepath.Base(path) + ")"
		}
		t.set("binary size (static, stripped)", col, float64(fi.Size())/1e6, label)
		return nil
	}
	if c.tini != "" {
		p := c.tini
		if s := filepath.Join(filepath.Dir(c.tini), "tini-static"); fileExists(s) {
			p = s
		}
		if err := size(colTini, p); err != nil {
			return err
		}
	}
	if c.dumbInit != "" {
		if err := size(colDumb, c.dumbInit); err != nil {
			return err
		}
	}
	if err := size(colDrainit, c.drainit); err != nil {
		return err
	}
	other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[runtime.GOARCH]
	if !c.built || other == "" {
		return nil
	}
	path := filepath.Join(c.work, "drainit-"+other)
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", path, "github.com/drainit/drainit/cmd/drainit")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOARCH="+other)
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building drainit for %s: %w", other, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	t.set("binary size, "+other+" (static, stripped)", colDrainit, float64(fi.Size())/1e6, fmt.Sprintf("%.2f MB", float64(fi.Size())/1e6))
	return nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// static reports whether an ELF file has no program interpreter, the
// dynamic loader.
func static(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}
