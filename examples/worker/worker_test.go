package main_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/drainit/drainit/internal/testkit"
)

const long = 30 * time.Second

var drainitBin, workerBin string

func TestMain(m *testing.M) {
	if err := testkit.ResetSignals(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "drainit-worker")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	drainitBin, workerBin = filepath.Join(dir, "drainit"), filepath.Join(dir, "worker")
	for bin, pkg := range map[string]string{drainitBin: "github.com/drainit/drainit/cmd/drainit", workerBin: "."} {
		build := exec.Command("go", "build", "-o", bin, pkg)
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building", pkg, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// A stop under drainit, the Sidekiq way: TSTP first, so a job queued during
// the drain is left for another worker; the running jobs finish; then TERM,
// with nothing left to push back. The jobs are seen by their lock files,
// or, in the lock-free variant, by their processes' command lines.
func TestQuietThenStop(t *testing.T) {
	for _, variant := range []string{"locks", "processes"} {
		t.Run(variant, func(t *testing.T) {
			t.Parallel()
			quietThenStop(t, variant == "processes")
		})
	}
}

func quietThenStop(t *testing.T, processes bool) {
	dir := t.TempDir()
	queue, locks := filepath.Join(dir, "queue"), filepath.Join(dir, "lock")
	env := []string{"DRAINIT_LOCK=" + locks + "/*.lock", "DRAINIT_QUIET_SIGNAL=TSTP", "DRAINIT_STOP_SIGNAL=TERM", "DRAINIT_GRACE=30"}
	args := []string{drainitBin, "--", workerBin, "-queue", queue, "-locks", locks}
	if processes {
		env[0] = "DRAINIT_JOB=worker job "
		args = []string{drainitBin, "--", workerBin, "-queue", queue, "-locks", "", "-process"}
	}
	p := start(t, env, args...)
	p.waitLine("worker: started")
	// Both still running when the drain looks, however loaded the
	// machine: with -process, drainit knows of a job only if its scan at
	// the drain's start finds the process.
	enqueue(t, queue, "a", 4)
	enqueue(t, queue, "b", 2)
	p.waitLine("job a started")
	p.waitLine("job b started")

	p.signal(syscall.SIGTERM)
	p.waitLine("worker: quiet (SIGTSTP)")
	enqueue(t, queue, "c", 0.1) // after the quiet signal: never taken
	p.waitLine("stopping the app signal=TERM")
	if processes {
		// drainit sees a job process end (its pidfd) before the worker
		// has reaped it and logged "finished": only drainit's own line is
		// sure to come before the stop, and the worker may still count
		// the job as running when TERM arrives (it then finds the job
		// finished, not interrupted: TestWaitProcessKeepsAFinishedJob).
		p.waitLine("worker: stopping (terminated)")
	} else {
		// The worker logs "finished" and forgets the job before it
		// removes the lock.
		p.waitLine("worker: stopping (terminated): 0 running")
	}
	if code := p.wait(); code != 0 {
		t.Fatalf("exit code %d, want 0:\n%s", code, p.transcript())
	}
	for _, j := range []struct{ name, secs string }{{"a", "4"}, {"b", "2"}} {
		if processes {
			p.before("worker job "+j.name+" "+j.secs+") ended", "stopping the app")
		} else {
			p.before("job "+j.name+" finished", "stopping the app")
		}
	}
	if processes && !strings.Contains(p.transcript(), `draining by=SIGTERM locks=none jobs="`) {
		t.Errorf("the drain did not name the job processes:\n%s", p.transcript())
	}
	if entries, _ := os.ReadDir(locks); processes && len(entries) > 0 {
		t.Errorf("the lock-free variant wrote lock files: %v", entries)
	}
	if strings.Contains(p.transcript(), "job c started") || strings.Contains(p.transcript(), "pushed back") {
		t.Errorf("job c was taken, or a job was interrupted:\n%s", p.transcript())
	}
	if _, err := os.Stat(filepath.Join(queue, "c.job")); err != nil {
		t.Errorf("job c is no longer in the queue: %v", err)
	}
}

// TERM while jobs run (drainit's budget spent, or no drainit at all): the
// worker pushes them back to the queue rather than losing them.
func TestStopPushesBack(t *testing.T) {
	dir := t.TempDir()
	queue, locks := filepath.Join(dir, "queue"), filepath.Join(dir, "lock")
	p := start(t, nil, workerBin, "-queue", queue, "-locks", locks)
	p.waitLine("worker: started")
	enqueue(t, queue, "a", 600)
	p.waitLine("job a started")
	if _, err := os.Stat(filepath.Join(locks, "a.lock")); err != nil {
		t.Fatalf("a running job holds no lock: %v", err)
	}
	p.signal(syscall.SIGTERM)
	p.waitLine("job a interrupted: pushed back to the queue")
	if code := p.wait(); code != 0 {
		t.Fatalf("exit code %d, want 0:\n%s", code, p.transcript())
	}
	if _, err := os.Stat(filepath.Join(queue, "a.job")); err != nil {
		t.Errorf("job a is not back in the queue: %v", err)
	}
	if _, err := os.Stat(filepath.Join(locks, "a.lock")); err == nil {
		t.Errorf("the lock of job a is still there")
	}
}

func enqueue(t *testing.T, queue, name string, secs float64) {
	t.Helper()
	if err := os.MkdirAll(queue, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(queue, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf("%g\n", secs)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(queue, name+".job")); err != nil {
		t.Fatal(err)
	}
}

// proc is a running command, its output read line by line.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    []string
	seen   int
	more   chan struct{}
	done   chan struct{} // the output ended
	exited chan struct{} // cmd.Wait returned
}

func start(t *testing.T, env []string, argv ...string) *proc {
	t.Helper()
	p := &proc{t: t, cmd: exec.Command(argv[0], argv[1:]...), more: make(chan struct{}, 1), done: make(chan struct{})}
	// Each drainit its own state file, not the machine's /run/drainit.
	p.cmd.Env = append(append(os.Environ(), "DRAINIT_STATE="+filepath.Join(t.TempDir(), "state.json")), env...)
	r, w := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.exited = make(chan struct{})
	go func() { p.cmd.Wait(); w.Close(); close(p.exited) }()
	t.Cleanup(func() { p.cmd.Process.Kill(); <-p.exited })
	go func() {
		defer close(p.done)
		s := bufio.NewScanner(r)
		for s.Scan() {
			p.mu.Lock()
			p.out = append(p.out, s.Text())
			p.mu.Unlock()
			select {
			case p.more <- struct{}{}:
			default:
			}
		}
	}()
	return p
}

func (p *proc) signal(sig syscall.Signal) {
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

// waitLine waits for the next line, after those already matched, that
// contains s.
func (p *proc) waitLine(s string) {
	p.t.Helper()
	deadline := time.After(long)
	ended := false
	for {
		p.mu.Lock()
		for i := p.seen; i < len(p.out); i++ {
			if strings.Contains(p.out[i], s) {
				p.seen = i + 1
				p.mu.Unlock()
				return
			}
		}
		p.mu.Unlock()
		if ended {
			p.t.Fatalf("the output ended without %q:\n%s", s, p.transcript())
		}
		select {
		case <-p.more:
		case <-p.done:
			ended = true
		case <-deadline:
			p.t.Fatalf("no %q after %v:\n%s", s, long, p.transcript())
		}
	}
}

func (p *proc) wait() int {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(long):
		p.t.Fatalf("did not exit:\n%s", p.transcript())
	}
	<-p.done
	return p.cmd.ProcessState.ExitCode()
}

func (p *proc) transcript() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.out, "\n")
}

// before fails unless the line containing a comes before the one with b.
func (p *proc) before(a, b string) {
	p.t.Helper()
	p.mu.Lock()
	ia, ib := -1, -1
	for i, l := range p.out {
		if ia < 0 && strings.Contains(l, a) {
			ia = i
		}
		if ib < 0 && strings.Contains(l, b) {
			ib = i
		}
	}
	p.mu.Unlock()
	if ia < 0 || ib < 0 || ia > ib {
		p.t.Errorf("want %q before %q:\n%s", a, b, p.transcript())
	}
}
