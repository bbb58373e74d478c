package main_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/drainit/drainit/internal/benchapp"
	"github.com/drainit/drainit/internal/testkit"
)

// The benchmarks of issue 6: the time from the last lock's removal to the
// app receiving its stop signal, taken inside the app, with one lock and
// with 10,000. Each iteration is one drainit life, so ns/op is the cost of a
// whole start-drain-stop cycle; the figures that matter are the metrics:
//
//	go test ./cmd/drainit -run XXX -bench ReleaseToStop -benchtime 200x
//
// Targets: p50 ≤ 2 ms, p99 ≤ 10 ms; with 10,000 locks ≤ 50 ms and a peak
// RSS ≤ 16 MiB. Under -race drainit is built with the race detector too, and
// is several times slower and larger.

func BenchmarkReleaseToStop(b *testing.B) {
	for _, m := range []mode{{pid1: false}, {pid1: true}} {
		b.Run(m.String(), func(b *testing.B) {
			if m.pid1 && !canNamespace() {
				testkit.SkipOrFail(b, "PID namespaces need root and unshare")
			}
			dir := b.TempDir()
			lock := filepath.Join(dir, "job.lock")
			var took []time.Duration
			for b.Loop() {
				if err := os.WriteFile(lock, []byte("1\n"), 0o644); err != nil {
					b.Fatal(err)
				}
				r := launchDrainit(b, m, "--lock", dir+"/*.lock")
				r.drain(b)
				t0 := time.Now().UnixNano()
				if err := os.Remove(lock); err != nil {
					b.Fatal(err)
				}
				took = append(took, r.stopAt(b)-time.Duration(t0))
				r.end(b)
			}
			reportQuantiles(b, took)
		})
	}
}

// BenchmarkJobExitToStop is the same measure for the jobs of issue 16,
// which write no lock file: the time from the last job's exit to the app
// receiving its stop signal. The job is the app's child matched by --job
// (its exit comes through a pidfd), or an orphan adopted by drainit and
// counted by --orphans (through the reaper, SIGCHLD); either way drainit
// scans /proc once more before the stop signal. The job ends when the
// benchmark closes the FIFO it reads, and its exit is the moment the
// benchmark's own pidfd of it turns readable: how long a process takes to
// exit (1–2 ms for this test binary on a loaded 2-core machine) is the
// job's, not drainit's. told-ms counts from the close instead, exit
// included. Run it beside BenchmarkReleaseToStop, in one go, to compare:
//
//	go test ./cmd/drainit -run XXX -bench 'ReleaseToStop$|JobExitToStop' -benchtime 200x
//
// Target: p50 ≤ 1 ms.
func BenchmarkJobExitToStop(b *testing.B) {
	for _, kind := range []string{"job", "orphans"} {
		for _, m := range []mode{{pid1: false}, {pid1: true}} {
			b.Run(kind+"/"+m.String(), func(b *testing.B) {
				if m.pid1 && !canNamespace() {
					testkit.SkipOrFail(b, "PID namespaces need root and unshare")
				}
				fifo := filepath.Join(b.TempDir(), "job.fifo")
				if err := syscall.Mkfifo(fifo, 0o600); err != nil {
					b.Fatal(err)
				}
				word := fmt.Sprintf("benchjob%d", os.Getpid())
				env := []string{"BENCH_FIFO=" + fifo, "BENCH_WORD=" + word, "BENCH_JOB=child"}
				args := []string{"--job", word}
				if kind == "orphans" {
					env[2], args = "BENCH_JOB=orphan", []string{"--orphans"}
				}
				var took, told []time.Duration
				for b.Loop() {
					r := launchDrainitEnv(b, m, env, args...)
					r.wantJob(b)
					r.drain(b)
					pidfd := jobPidfd(b, word)
					// Opening meets the job's own open; closing is its end.
					w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
					if err != nil {
						b.Fatal(err)
					}
					t0 := time.Now().UnixNano()
					w.Close()
					if _, err := unix.Poll([]unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}, -1); err != nil {
						b.Fatal(err)
					}
					exited := time.Now().UnixNano()
					unix.Close(pidfd)
					stop := r.stopAt(b)
					took = append(took, stop-time.Duration(exited))
					told = append(told, stop-time.Duration(t0))
					r.end(b)
				}
				reportQuantiles(b, took)
				slices.Sort(told)
				b.ReportMetric(float64(told[len(told)/2])/float64(time.Millisecond), "told-p50-ms")
			})
		}
	}
}

// BenchmarkReleaseToStop10k holds 10,000 locks in 100 directories when the
// drain starts, removes them all, and measures from the last removal.
// drainit runs as the benchmark's direct child (subreaper mode); peak-MiB is
// its VmHWM, read while it is still there. rusage-MiB is ru_maxrss from
// wait4, which also counts the children drainit reaped (the app, this test
// binary): an upper bound only.
//
// Under -race, which makes drainit several times slower, it holds 1,000
// locks in 10 directories: enough to check the harness, not to quote.
func BenchmarkReleaseToStop10k(b *testing.B) {
	dirs, perDir := 100, 100
	if raceEnabled {
		dirs = 10
	}
	root := b.TempDir()
	var paths []string
	for d := range dirs {
		dir := fmt.Sprintf("%s/app%03d", root, d)
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := range perDir {
			paths = append(paths, fmt.Sprintf("%s/job%03d.lock", dir, f))
		}
	}
	content := []byte(strconv.Itoa(os.Getpid()) + "\n")
	var took []time.Duration
	var peak, maxrss int64
	for b.Loop() {
		for _, p := range paths {
			if err := os.WriteFile(p, content, 0o644); err != nil {
				b.Fatal(err)
			}
		}
		r := launchDrainit(b, mode{}, "--lock", root+"/*/*.lock")
		r.drain(b)
		var t0 int64
		for _, p := range paths {
			t0 = time.Now().UnixNano()
			if err := os.Remove(p); err != nil {
				b.Fatal(err)
			}
		}
		took = append(took, r.stopAt(b)-time.Duration(t0))
		peak = max(peak, hwm(b, r.pid))
		maxrss = max(maxrss, r.end(b))
	}
	reportQuantiles(b, took)
	b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
	b.ReportMetric(float64(maxrss)/(1<<20), "rusage-MiB")
}

// benchProc is one drainit supervising the stamp helper. Its output is read
// for the few lines a benchmark waits for; the rest is kept only as a tail
// for failure messages, so that 10,000 "released" lines cost nothing here.
type benchProc struct {
	cmd   *exec.Cmd
	pid   int // drainit's, as seen from the benchmark
	stdin io.WriteCloser
	lines chan string
	jobs  chan string // the job's "job" line, which comes in any order
	mu    sync.Mutex
	tail  []string
	eof   chan struct{}
	// logged counts drainit's own lines.
	logged atomic.Int64
}

func canNamespace() bool {
	_, err := exec.LookPath("unshare")
	return err == nil && os.Geteuid() == 0
}

func launchDrainit(b *testing.B, m mode, args ...string) *benchProc {
	b.Helper()
	return launchDrainitEnv(b, m, nil, args...)
}

func launchDrainitEnv(b *testing.B, m mode, env []string, args ...string) *benchProc {
	b.Helper()
	argv := append([]string{drainitBin}, args...)
	argv = append(argv, "--grace", "30s", "--stop-timeout", "10s", "--", selfBin)
	if m.pid1 {
		argv = append([]string{"unshare", "--pid", "--fork", "--mount-proc"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	if p, err := exec.LookPath(argv[0]); err == nil {
		cmd.Path = p
	}
	cmd.Env = append(append(os.Environ(), benchapp.Env+"=stamp"), env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	w.Close()
	p := &benchProc{cmd: cmd, pid: cmd.Process.Pid, stdin: stdin, lines: make(chan string, 16), jobs: make(chan string, 1), eof: make(chan struct{})}
	go p.read(r)
	b.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			syscall.Kill(p.pid, syscall.SIGKILL)
			p.cmd.Process.Kill()
			p.stdin.Close()
			p.cmd.Wait()
		}
	})
	p.want(b, "ready")
	if m.pid1 {
		p.pid = firstChild(b, cmd.Process.Pid)
	}
	return p
}

func (p *benchProc) read(r io.Reader) {
	defer close(p.eof)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "drainit ") {
			p.logged.Add(1)
		}
		if line == "job" {
			p.jobs <- line
		} else if line == "ready" || strings.HasPrefix(line, "stop ") || strings.Contains(line, " draining by=") {
			p.lines <- line
		}
		p.mu.Lock()
		p.tail = append(p.tail, line)
		if len(p.tail) > 40 {
			p.tail = p.tail[1:]
		}
		p.mu.Unlock()
	}
}

// want waits for the next line of interest and checks that it starts with
// prefix.
func (p *benchProc) want(b *testing.B, prefix string) string {
	b.Helper()
	select {
	case line := <-p.lines:
		if !strings.HasPrefix(line, prefix) {
			b.Fatalf("got %q, want a line starting with %q; output:\n%s", line, prefix, p.output())
		}
		return line
	case <-p.eof:
		b.Fatalf("output ended before a line starting with %q:\n%s", prefix, p.output())
	case <-time.After(long):
		b.Fatalf("no line starting with %q within %v:\n%s", prefix, long, p.output())
	}
	return ""
}

// jobPidfd opens a pidfd of the benchmark's job, found by its command line
// in this namespace's /proc, where it also shows when it runs in a PID
// namespace of its own.
func jobPidfd(b *testing.B, word string) int {
	b.Helper()
	want := selfBin + " " + word + "\x00"
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cmd, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline"); strings.ReplaceAll(string(cmd), "\x00", " ") == strings.ReplaceAll(want, "\x00", " ") {
			fd, err := unix.PidfdOpen(pid, 0)
			if err != nil {
				b.Fatal(err)
			}
			return fd
		}
	}
	b.Fatalf("no process with the command line %q", want)
	return 0
}

// wantJob waits for the job to say it runs as measured.
func (p *benchProc) wantJob(b *testing.B) {
	b.Helper()
	select {
	case <-p.jobs:
	case <-p.eof:
		b.Fatalf("output ended before the job's line:\n%s", p.output())
	case <-time.After(long):
		b.Fatalf("no line from the job within %v:\n%s", long, p.output())
	}
}

func (p *benchProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

// drain sends SIGTERM and waits until drainit says it drains, which it says
// only once its watches are set and its first scan is done.
func (p *benchProc) drain(b *testing.B) {
	b.Helper()
	if err := syscall.Kill(p.pid, syscall.SIGTERM); err != nil {
		b.Fatal(err)
	}
	p.want(b, "drainit")
}

// stopAt waits for the app's stop line and returns when it got the signal.
func (p *benchProc) stopAt(b *testing.B) time.Duration {
	b.Helper()
	f := strings.Fields(p.want(b, "stop "))
	ns, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return time.Duration(ns)
}

// end lets the app exit, waits for drainit and returns its ru_maxrss in
// bytes.
func (p *benchProc) end(b *testing.B) int64 {
	b.Helper()
	p.stdin.Close()
	err := p.cmd.Wait()
	<-p.eof
	if err != nil {
		b.Fatalf("drainit: %v; output:\n%s", err, p.output())
	}
	return p.cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10
}

// firstChild returns unshare's child, drainit; the app's "ready" has been
// read, so it exists.
func firstChild(b *testing.B, pid int) int {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		b.Fatalf("unshare (%d) has no child", pid)
	}
	n, _ := strconv.Atoi(f[0])
	return n
}

// hwm is the peak resident set of pid alone, from VmHWM, in bytes.
func hwm(b *testing.B, pid int) int64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range bytes.Lines(data) {
		if v, ok := bytes.CutPrefix(line, []byte("VmHWM:")); ok {
			kb, _ := strconv.ParseInt(string(bytes.Fields(v)[0]), 10, 64)
			return kb << 10
		}
	}
	b.Fatalf("no VmHWM for %d", pid)
	return 0
}

// reportQuantiles reports the nearest-rank p50 and p99 of took in ms.
func reportQuantiles(b *testing.B, took []time.Duration) {
	if len(took) == 0 {
		return
	}
	slices.Sort(took)
	q := func(f float64) float64 {
		i := int(f*float64(len(took))+0.999999) - 1
		return float64(took[max(i, 0)]) / float64(time.Millisecond)
	}
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(took[len(took)-1])/float64(time.Millisecond), "max-ms")
}
