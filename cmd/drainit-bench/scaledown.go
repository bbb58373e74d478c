package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The columns of the table, in order.
const (
	colNone     = "no init"
	colTini     = "tini"
	colTiniG    = "tini -g"
	colDumb     = "dumb-init"
	colPreStop  = "preStop loop + tini"
	colDrainit  = "drainit"
	preStopLoop = `while ls %s/*.lock; do sleep 10; done >/dev/null 2>&1`
)

// variant is one way of running the pod's PID 1.
type variant struct {
	col     string
	init    func(c *config, lockDir string) []string // nil: the app is PID 1
	preStop bool                                     // the kubelet runs preStopLoop first
	needs   func(c *config) string                   // the tool it needs, "" if it is there
}

func variants() []variant {
	tini := func(c *config) string { return missingIf(c.tini, "tini") }
	return []variant{
		{col: colNone},
		{col: colTini, init: func(c *config, _ string) []string { return []string{c.tini, "--"} }, needs: tini},
		{col: colTiniG, init: func(c *config, _ string) []string { return []string{c.tini, "-g", "--"} }, needs: tini},
		{col: colDumb, init: func(c *config, _ string) []string { return []string{c.dumbInit, "--"} },
			needs: func(c *config) string { return missingIf(c.dumbInit, "dumb-init") }},
		{col: colPreStop, init: func(c *config, _ string) []string { return []string{c.tini, "--"} }, preStop: true, needs: tini},
		{col: colDrainit, init: func(c *config, lockDir string) []string {
			return []string{c.drainit, "--lock", lockDir + "/*.lock", "--grace", c.grace.String(), "--"}
		}},
	}
}

func missingIf(path, name string) string {
	if path == "" {
		return name
	}
	return ""
}

// pod is one PID namespace of the scenario.
type pod struct {
	name    string
	lockDir string
	cmd     *exec.Cmd // unshare
	pid1    int       // the init under test, as seen from here
	t0      time.Time // the stop: the preStop hook's start, or the signal
	exit    time.Time
	done    chan struct{}
}

// scaleDown runs the first user's scale-down once per variant, one variant
// at a time, and fills the scenario's rows of the table.
func scaleDown(c *config, t *table) error {
	for i, v := range variants() {
		if v.needs != nil && v.needs(c) != "" {
			continue
		}
		dir := filepath.Join(c.work, fmt.Sprintf("scale-down-%d", i))
		res, err := scaleDownOnce(c, v, dir)
		if err != nil {
			return fmt.Errorf("%s: %w", v.col, err)
		}
		progress("  %-20s lost %d/%d, linger median %v, stop→exit median %v", v.col, res.lost, c.pods*c.jobs,
			res.linger[len(res.linger)/2].Round(time.Millisecond), res.stopExit[len(res.stopExit)/2].Round(time.Millisecond))
		if res.polling > 0 {
			note := fmt.Sprintf("%s: in %d of %d pods drainit had no inotify instance left (fs.inotify.max_user_instances, shared by every process of the user on the machine) and polled every 1s: its linger is the poll's, not the watcher's", v.col, res.polling, c.pods)
			progress("  %s", note)
			t.notes = append(t.notes, note)
		}
		t.set("jobs lost", v.col, float64(res.lost), fmt.Sprintf("%d/%d", res.lost, c.pods*c.jobs))
		if len(res.toSignal) > 0 {
			t.setDur("last job → app's stop signal, median", v.col, median(res.toSignal))
			t.setDur("last job → app's stop signal, max", v.col, slices.Max(res.toSignal))
		}
		t.setDur("linger after last job, median", v.col, median(res.linger))
		t.setDur("linger after last job, max", v.col, slices.Max(res.linger))
		t.setDur("stop → pod exit, median", v.col, median(res.stopExit))
		t.setDur("stop → pod exit, max", v.col, slices.Max(res.stopExit))
	}
	return nil
}

type scaleDownResult struct {
	lost, polling    int // polling: pods whose drainit had no inotify
	linger, stopExit []time.Duration
	toSignal         []time.Duration // last job → the app's stop signal, in pods that lost no job
}

// readTime reads a file holding Unix nanoseconds.
func readTime(path string) (time.Time, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return time.Time{}, err
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return time.Unix(0, ns), err
}

func scaleDownOnce(c *config, v variant, dir string) (scaleDownResult, error) {
	var res scaleDownResult
	doneDir := filepath.Join(dir, "done")
	goFile := filepath.Join(dir, "go")
	if err := os.MkdirAll(doneDir, 0o755); err != nil {
		return res, err
	}
	pods := make([]*pod, c.pods)
	for i := range pods {
		p := &pod{name: fmt.Sprintf("pod%02d", i), done: make(chan struct{})}
		p.lockDir = filepath.Join(dir, p.name, "lock")
		if err := os.MkdirAll(p.lockDir, 0o755); err != nil {
			return res, err
		}
		argv := append([]string{}, c.unshare...)
		argv = append(argv, "--kill-child")
		if v.init != nil {
			argv = append(argv, v.init(c, p.lockDir)...)
		}
		argv = append(argv, c.self, p.lockDir, doneDir, goFile, p.name)
		for range c.jobs {
			d := c.jobMin + rand.N(c.jobMax-c.jobMin+1)
			argv = append(argv, d.Round(time.Millisecond).String())
		}
		log, err := os.Create(filepath.Join(dir, p.name, "output"))
		if err != nil {
			return res, err
		}
		p.cmd = exec.Command(argv[0], argv[1:]...)
		p.cmd.Env = append(os.Environ(), roleEnv+"=app")
		p.cmd.Stdout, p.cmd.Stderr = log, log
		if err := start(p.cmd); err != nil {
			return res, err
		}
		log.Close()
		pods[i] = p
		go func() {
			p.cmd.Wait()
			p.exit = time.Now()
			close(p.done)
		}()
	}

	// Every job holds its lock before anything is stopped.
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := 0
		for _, p := range pods {
			select {
			case <-p.done:
				out, _ := os.ReadFile(filepath.Join(dir, p.name, "output"))
				return res, fmt.Errorf("%s exited before its jobs started: %s", p.name, out)
			default:
			}
			m, _ := filepath.Glob(p.lockDir + "/*.lock")
			n += len(m)
		}
		if n == c.pods*c.jobs {
			break
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(filepath.Join(dir, pods[0].name, "output"))
			tree, _ := exec.Command("ps", "-eo", "pid,ppid,stat,wchan:24,args", "--forest").CombinedOutput()
			return res, fmt.Errorf("%d of %d locks held after 30s; %s's output: %q; its PID 1: %s", n, c.pods*c.jobs, pods[0].name, out, tree)
		}
		time.Sleep(10 * time.Millisecond) // polling the lock files' creation
	}
	for _, p := range pods {
		pid, err := firstChild(p.cmd.Process.Pid)
		if err != nil {
			return res, err
		}
		p.pid1 = pid
	}

	// All told to stop at once, each with its grace deadline; the jobs'
	// remaining work is counted from this moment.
	tmp := goFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(time.Now().UnixNano(), 10)), 0o644); err != nil {
		return res, err
	}
	if err := os.Rename(tmp, goFile); err != nil {
		return res, err
	}
	var wg sync.WaitGroup
	for _, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.t0 = time.Now()
			kill := time.AfterFunc(c.grace, func() { syscall.Kill(p.pid1, syscall.SIGKILL) })
			defer kill.Stop()
			if v.preStop {
				ctx, cancel := context.WithDeadline(context.Background(), p.t0.Add(c.grace))
				hook := exec.CommandContext(ctx, "bash", "-c", fmt.Sprintf(preStopLoop, p.lockDir))
				_ = hook.Run() // as the kubelet: whatever the hook's end, SIGTERM follows
				cancel()
			}
			syscall.Kill(p.pid1, syscall.SIGTERM)
			<-p.done
		}()
	}
	wg.Wait()

	for _, p := range pods {
		if out, err := os.ReadFile(filepath.Join(dir, p.name, "output")); err == nil && strings.Contains(string(out), "polling instead") {
			res.polling++
		}
		last, lost := p.t0, 0
		for j := range c.jobs {
			at, err := readTime(filepath.Join(doneDir, fmt.Sprintf("%s-%d", p.name, j)))
			if err != nil {
				lost++
				continue
			}
			if at.After(last) {
				last = at
			}
		}
		res.lost += lost
		res.linger = append(res.linger, p.exit.Sub(last))
		if sig, err := readTime(filepath.Join(doneDir, p.name+"-app")); err == nil && lost == 0 {
			res.toSignal = append(res.toSignal, sig.Sub(last))
		}
		res.stopExit = append(res.stopExit, p.exit.Sub(p.t0))
	}
	return res, nil
}

// firstChild returns pid's child: unshare's is the namespace's PID 1.
func firstChild(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("unshare (%d) has no child", pid)
	}
	return strconv.Atoi(f[0])
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// quantile is the nearest-rank quantile q of ds.
func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1
	return s[max(i, 0)]
}

var (
	startedMu sync.Mutex
	started   []*exec.Cmd
)

// start starts cmd and remembers it, so that an interrupted run ends it.
func start(cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	startedMu.Lock()
	started = append(started, cmd)
	startedMu.Unlock()
	return nil
}

// killAll kills what start started and is still running. unshare runs with
// --kill-child, so killing it ends its namespace.
func killAll() {
	startedMu.Lock()
	defer startedMu.Unlock()
	for _, cmd := range started {
		_ = cmd.Process.Kill() // "already finished" for most: nothing to do
	}
}
