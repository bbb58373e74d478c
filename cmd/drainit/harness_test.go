package main_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/drainit/drainit/internal/testkit"
)

var (
	drainitBin string // built once in TestMain
	selfBin    string // this test binary, the helper app
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helperMain(mode, os.Args[1:]))
	}
	if err := testkit.ResetSignals(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "drainit-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	drainitBin = filepath.Join(dir, "drainit")
	// -buildvcs=false: in a git checkout Go would stamp a pseudo-version
	// (v0.0.0-date-hash) that --version prints, unless the go env says
	// otherwise; TestVersion wants the same "(devel)" on every machine.
	args := []string{"build", "-buildvcs=false", "-o", drainitBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building drainit:", err)
		os.Exit(1)
	}
	selfBin, _ = os.Executable()
	// A -race binary sleeps a second at exit by default: that would count
	// against every deadline the tests check.
	os.Setenv("GORACE", "atexit_sleep_ms=0")
	// Every drainit a test starts without start's own state file keeps it
	// here, not in the machine's /run/drainit.
	os.Setenv("DRAINIT_STATE", filepath.Join(dir, "state.json"))
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// mode is how drainit runs: as PID 1 of a fresh PID namespace, or as a
// plain process that makes itself a subreaper; with --group or without.
type mode struct {
	pid1  bool
	group bool
}

func (m mode) String() string {
	s := "subreaper"
	if m.pid1 {
		s = "pid1"
	}
	if m.group {
		s += "+group"
	}
	return s
}

var modes = []mode{{true, false}, {true, true}, {false, false}, {false, true}}

// forEachMode runs f once per mode, as a subtest.
func forEachMode(t *testing.T, f func(t *testing.T, m mode)) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			t.Parallel()
			f(t, m)
		})
	}
}

// skipOrFail skips a test that cannot run here, or fails it in CI.
var skipOrFail = testkit.SkipOrFail

func needNamespaces(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "PID namespaces need root: run the tests as root")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		skipOrFail(t, "unshare not found: apt-get install util-linux")
	}
}

// proc is a running drainit, its output read line by line.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	pid  int // drainit's PID as seen from the test
	mu   sync.Mutex
	out  []string
	seen int // lines already matched by waitLine
	more chan struct{}
	done chan struct{} // the process exited; code is set
	eof  chan struct{} // its output is all read
	code int
}

type opts struct {
	env   []string
	stdin io.Reader
	wrap  []string // prepended to the command line, e.g. the launch helper
}

// start runs drainit in mode m with args; the helper app's mode is set by
// the HELPER variable in o.env.
func start(t *testing.T, m mode, o opts, args ...string) *proc {
	t.Helper()
	argv := []string{drainitBin, "--log-level", "debug"}
	if m.group {
		argv = append(argv, "--group")
	}
	argv = append(argv, args...)
	if m.pid1 {
		needNamespaces(t)
		argv = append([]string{"unshare", "--pid", "--fork", "--mount-proc"}, argv...)
	}
	argv = append(o.wrap, argv...)
	cmd := exec.Command(argv[0], argv[1:]...)
	if p, err := exec.LookPath(argv[0]); err == nil {
		cmd.Path = p
	}
	// A state file of its own, not the machine's /run/drainit: tests run
	// side by side. o.env may name another.
	env := append(os.Environ(), "DRAINIT_STATE="+filepath.Join(t.TempDir(), "state.json"))
	cmd.Env = append(env, o.env...)
	cmd.Stdin = o.stdin
	p := launch(t, cmd)
	if m.pid1 {
		p.pid = p.childOf(cmd.Process.Pid)
	}
	return p
}

// launch starts cmd with its stdout and stderr read line by line into a
// proc, and ends it with the test.
func launch(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	p := &proc{t: t, cmd: cmd, pid: cmd.Process.Pid, more: make(chan struct{}, 1), done: make(chan struct{}), eof: make(chan struct{})}
	go p.read(r)
	go func() {
		cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.code = 128 + int(ws.Signal())
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			// The whole tree: an app that outlived its drainit would run
			// on after the test, reparented to the machine's init.
			for _, pid := range append(tree(p.pid), p.pid) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			cmd.Process.Kill()
			<-p.done
		}
		p.drained()
		if strings.Contains(p.transcript(), "DATA RACE") {
			t.Errorf("the race detector found a data race:\n%s", p.transcript())
		} else if t.Failed() {
			t.Logf("output:\n%s", p.transcript())
		}
	})
	return p
}

// drained waits, briefly, for the last lines after the process exited.
// The pipe ends when every process holding it is gone; one the test left
// running on purpose (a job outliving its wrapper) may keep it open.
func (p *proc) drained() {
	select {
	case <-p.eof:
	case <-time.After(time.Second):
	}
}

// childOf waits for unshare to fork and returns its child, drainit.
func (p *proc) childOf(pid int) int {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		if f := strings.Fields(string(b)); len(f) > 0 {
			n, _ := strconv.Atoi(f[0])
			return n
		}
		select {
		case <-p.done:
			return 0 // all over already: nothing to signal
		case <-time.After(time.Millisecond):
		}
	}
	p.t.Fatal("unshare did not fork drainit")
	return 0
}

func (p *proc) read(r io.Reader) {
	defer close(p.eof)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		p.mu.Lock()
		p.out = append(p.out, sc.Text())
		p.mu.Unlock()
		select {
		case p.more <- struct{}{}:
		default:
		}
	}
}

func (p *proc) transcript() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.out, "\n")
}

// waitLine waits for a line matching re after the last line matched, and
// returns its submatches.
func (p *proc) waitLine(re string, timeout time.Duration) []string {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	w := p.waiting(re, timeout)
	for {
		p.mu.Lock()
		for i := p.seen; i < len(p.out); i++ {
			if m := rx.FindStringSubmatch(p.out[i]); m != nil {
				p.seen = i + 1
				p.mu.Unlock()
				return m
			}
		}
		p.mu.Unlock()
		w.next()
	}
}

// waitSeen waits for a line matching re anywhere in the output, for lines
// whose order does not matter. It does not move waitLine's place.
func (p *proc) waitSeen(re string, timeout time.Duration) {
	p.t.Helper()
	rx := regexp.MustCompile(`(?m)` + re)
	w := p.waiting(re, timeout)
	for !rx.MatchString(p.transcript()) {
		w.next()
	}
}

// waiter is one wait for a line: next blocks until more output may hold
// it, and fails the test when none can come. Once drainit has exited, the
// processes still holding the pipe (an app stopped by its parent-death
// signal, a job outliving its wrapper) may still write until it ends, or
// until the wait's own deadline: on a loaded machine that can take more
// than a moment.
type waiter struct {
	p        *proc
	re       string
	timeout  time.Duration
	deadline <-chan time.Time
	done     <-chan struct{} // drainit's exit; nil once seen
	eof      <-chan struct{} // the pipe's end; waited for from drainit's exit on
	ended    bool            // the pipe has ended: what is there is all
}

func (p *proc) waiting(re string, timeout time.Duration) *waiter {
	return &waiter{p: p, re: re, timeout: timeout, deadline: time.After(timeout), done: p.done}
}

func (w *waiter) next() {
	w.p.t.Helper()
	if w.ended {
		w.p.t.Fatalf("drainit exited (%d) before printing a line matching %q:\n%s", w.p.code, w.re, w.p.transcript())
	}
	select {
	case <-w.p.more:
	case <-w.done:
		w.done, w.eof = nil, w.p.eof
	case <-w.eof:
		w.ended = true // one more look at the lines, then the end
	case <-w.deadline:
		w.p.t.Fatalf("no line matching %q within %v:\n%s", w.re, w.timeout, w.p.transcript())
	}
}

// logSpan is the time between two of drainit's own log lines, by the
// timestamps drainit wrote: unlike the test's clock it does not count the
// time a loaded machine takes to schedule the test and unshare.
func (p *proc) logSpan(fromRe, toRe string) time.Duration {
	p.t.Helper()
	at := func(re string) time.Time {
		m := regexp.MustCompile(`(?m)^drainit (\d\d:\d\d:\d\d\.\d\d\d) .*` + re).FindStringSubmatch(p.transcript())
		if m == nil {
			p.t.Fatalf("no log line matching %q:\n%s", re, p.transcript())
		}
		t, err := time.Parse("15:04:05.000", m[1])
		if err != nil {
			p.t.Fatal(err)
		}
		return t
	}
	return at(toRe).Sub(at(fromRe))
}

// wait waits for drainit to exit and returns its code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		p.drained()
		return p.code
	case <-time.After(timeout):
		p.t.Fatalf("drainit still running after %v:\n%s", timeout, p.transcript())
	}
	return 0
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := syscall.Kill(p.pid, sig); err != nil {
		p.t.Fatalf("kill %d %v: %v", p.pid, sig, err)
	}
}

func (p *proc) has(substr string) bool {
	return strings.Contains(p.transcript(), substr)
}

// children lists the PIDs and states of drainit's children, read from /proc.
func children(pid int) map[int]byte {
	out := map[int]byte{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[i+1:]))
		if ppid, _ := strconv.Atoi(f[1]); ppid == pid {
			out[n] = f[0][0]
		}
	}
	return out
}

// tree lists the descendants of pid.
func tree(pid int) []int {
	var out []int
	for kid := range children(pid) {
		out = append(out, kid)
		out = append(out, tree(kid)...)
	}
	return out
}

// eventually polls cond until it holds, failing after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
	}
}

func helper(mode string, extra ...string) []string {
	return append([]string{helperEnv + "=" + mode}, extra...)
}
