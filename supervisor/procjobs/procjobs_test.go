package procjobs_test

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drainit/drainit/internal/testkit"
	"github.com/drainit/drainit/supervisor/procjobs"
)

// sleeper starts `sleep N tag` (sleep adds its arguments up), waits until
// its exec is done, and ends it with the test.
func sleeper(t testing.TB, secs string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", secs, "0")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Start returns before the kernel has written the new program's
	// arguments (TestCommandLineRightAfterStart).
	path := "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cmdline"
	for deadline := time.Now().Add(10 * time.Second); ; {
		if b, err := os.ReadFile(path); err == nil && strings.HasPrefix(string(b), "sleep\x00") {
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatalf("sleep %s (pid %d): its exec not done after 10s", secs, cmd.Process.Pid)
		}
		time.Sleep(time.Millisecond) // polling the kernel's progress
	}
}

func pidsOf(ps []procjobs.Proc) []int {
	var out []int
	for _, p := range ps {
		out = append(out, p.PID)
	}
	return out
}

func TestScanMatchesDescendants(t *testing.T) {
	a := sleeper(t, "1001")
	b := sleeper(t, "1002")
	self := os.Getpid()
	rules := procjobs.Rules{Match: []*regexp.Regexp{regexp.MustCompile(`^sleep 100[12] `)}}
	got := pidsOf(procjobs.Scan(rules, procjobs.Scope{Self: self}))
	if want := []int{a.Process.Pid, b.Process.Pid}; !slices.Equal(got, want) {
		t.Fatalf("scan found %v, want %v", got, want)
	}
	got = pidsOf(procjobs.Scan(rules, procjobs.Scope{Self: self, Exclude: []int{a.Process.Pid}}))
	if want := []int{b.Process.Pid}; !slices.Equal(got, want) {
		t.Fatalf("with %d excluded, scan found %v, want %v", a.Process.Pid, got, want)
	}
	// Not below PID 1's tree as seen from a process that is not its parent.
	if got := procjobs.Scan(rules, procjobs.Scope{Self: b.Process.Pid}); len(got) != 0 {
		t.Fatalf("below the sleeper: found %v, want nothing", got)
	}
	p := procjobs.Scan(rules, procjobs.Scope{Self: self})[0]
	if want := "pid " + strconv.Itoa(a.Process.Pid) + " (sleep 1001 0)"; p.String() != want {
		t.Errorf("named %q, want %q", p, want)
	}
}

// Orphans are the caller's children: here, any child of this test.
func TestScanOrphansAreChildren(t *testing.T) {
	a := sleeper(t, "1003")
	got := procjobs.Scan(procjobs.Rules{Orphans: true}, procjobs.Scope{Self: os.Getpid()})
	if !slices.Contains(pidsOf(got), a.Process.Pid) {
		t.Fatalf("scan found %v, want %d among them", got, a.Process.Pid)
	}
	for _, p := range got {
		if !p.Child(os.Getpid()) {
			t.Errorf("%v is not a child", p)
		}
	}
}

// The caller and its ancestors never count, even when their command lines
// match: the shell that runs drainit wait holds the expression.
func TestScanAllSkipsSelfAndAncestors(t *testing.T) {
	self := os.Getpid()
	me := regexp.MustCompile(regexp.QuoteMeta(os.Args[0]))
	got := procjobs.Scan(procjobs.Rules{Match: []*regexp.Regexp{me}}, procjobs.Scope{Self: self, All: true, Ancestors: true})
	if slices.Contains(pidsOf(got), self) {
		t.Fatalf("the caller counted itself: %v", got)
	}
	a := sleeper(t, "1004")
	got = procjobs.Scan(procjobs.Rules{Match: []*regexp.Regexp{regexp.MustCompile(`^sleep 1004 `)}}, procjobs.Scope{Self: a.Process.Pid, All: true, Ancestors: true})
	if len(got) != 0 {
		t.Fatalf("the sleeper's own scan found %v", got)
	}
	got = procjobs.Scan(procjobs.Rules{Match: []*regexp.Regexp{regexp.MustCompile(`^sleep 1004 `)}}, procjobs.Scope{Self: self, All: true})
	if !slices.Equal(pidsOf(got), []int{a.Process.Pid}) {
		t.Fatalf("scan of all found %v, want the sleeper", got)
	}
}

// A command line read right after exec.Cmd.Start returns is the new
// program's: the kernel lets the parent go before it writes the arguments,
// and a plain read of /proc/PID/cmdline comes back empty a fifth of the
// time here. A scan reads the newest process last, and on an idle machine
// the exec is over by then; under CI's load it was not, and the scan found
// nothing. The other tests wait for the exec (sleeper): their subject is
// matching.
func TestCommandLineRightAfterStart(t *testing.T) {
	// About 40 of 200 reads meet the window: the test fails for certain
	// without the wait, and rarely meets an exec slower than its 250 ms.
	for range 200 {
		cmd := exec.Command("sleep", "1006", "0")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		got, ok := procjobs.CommandLine(cmd.Process.Pid)
		cmd.Process.Kill()
		cmd.Wait()
		if !ok || got != "sleep 1006 0" {
			t.Fatalf("read right after the start: %q (ok=%v), want %q", got, ok, "sleep 1006 0")
		}
	}
}

func TestExitsReportsTheEnd(t *testing.T) {
	e, err := procjobs.NewExits()
	if err != nil {
		testkit.SkipOrFail(t, fmt.Sprintf("no pidfds here (pidfd_open needs Linux 5.3): %v", err))
	}
	defer e.Close()
	a := sleeper(t, "1005")
	rules := procjobs.Rules{Match: []*regexp.Regexp{regexp.MustCompile(`^sleep 1005 `)}}
	ps := procjobs.Scan(rules, procjobs.Scope{Self: os.Getpid()})
	if len(ps) != 1 {
		t.Fatalf("scan found %v", ps)
	}
	if err := e.Watch(ps[0]); err != nil {
		t.Fatal(err)
	}
	a.Process.Kill()
	select {
	case pid := <-e.C:
		if pid != a.Process.Pid {
			t.Fatalf("exit of %d, want %d", pid, a.Process.Pid)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit reported")
	}
	e.Forget(a.Process.Pid)
	a.Wait()

	// A PID whose process is not the one scanned (another start time) is
	// an exit already.
	b := sleeper(t, "1006")
	ps = procjobs.Scan(procjobs.Rules{Match: []*regexp.Regexp{regexp.MustCompile(`^sleep 1006 `)}}, procjobs.Scope{Self: os.Getpid()})
	ps[0].Start++
	if err := e.Watch(ps[0]); err != procjobs.ErrGone {
		t.Fatalf("watch of a reused PID: %v, want ErrGone", err)
	}
	b.Process.Kill()
	b.Wait()
	ps[0].Start--
	if err := e.Watch(ps[0]); err != procjobs.ErrGone {
		t.Fatalf("watch of an ended process: %v, want ErrGone", err)
	}
}

// BenchmarkScan is one /proc scan with 1,000 more processes than the
// machine runs anyway: as a subreaper (its descendants: every stat read),
// and as a namespace's init matching command lines (every cmdline read,
// stat only for the matches). procs is how many /proc held.
func BenchmarkScan(b *testing.B) {
	for range 1000 {
		sleeper(b, "1000")
	}
	n := func() float64 {
		ents, _ := os.ReadDir("/proc")
		c := 0
		for _, e := range ents {
			if _, err := strconv.Atoi(e.Name()); err == nil {
				c++
			}
		}
		return float64(c)
	}
	job := []*regexp.Regexp{regexp.MustCompile(`job\.php`)}
	for _, tc := range []struct {
		name  string
		rules procjobs.Rules
		scope procjobs.Scope
	}{
		{"descendants-job", procjobs.Rules{Match: job}, procjobs.Scope{Self: os.Getpid()}},
		{"descendants-orphans", procjobs.Rules{Orphans: true}, procjobs.Scope{Self: os.Getpid()}},
		{"all-job", procjobs.Rules{Match: job}, procjobs.Scope{Self: os.Getpid(), All: true}},
		{"all-orphans", procjobs.Rules{Orphans: true}, procjobs.Scope{Self: os.Getpid(), All: true}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				procjobs.Scan(tc.rules, tc.scope)
			}
			b.ReportMetric(n(), "procs")
		})
	}
}

// Command is the command line logs and drainit status show, the one
// String names the job by.
func TestCommand(t *testing.T) {
	long := procjobs.Proc{PID: 7, Cmd: strings.Repeat("x", 100)}
	if got := long.Command(); got != strings.Repeat("x", 80)+"…" {
		t.Errorf("long: %q", got)
	}
	short := procjobs.Proc{PID: 7, Cmd: "php job.php 42"}
	if short.Command() != "php job.php 42" || long.String() != "pid 7 ("+long.Command()+")" {
		t.Errorf("%q, %q", short.Command(), long.String())
	}
}

// Started is when the process started, to the tick (10ms) /proc counts in,
// and early by as long as a loaded machine stops it between its two clock
// readings.
func TestStarted(t *testing.T) {
	before := time.Now()
	a := sleeper(t, "1004")
	after := time.Now()
	for _, p := range procjobs.Scan(procjobs.Rules{Orphans: true}, procjobs.Scope{Self: os.Getpid()}) {
		if p.PID != a.Process.Pid {
			continue
		}
		started, ok := p.Started()
		if !ok || started.Before(before.Add(-100*time.Millisecond)) || started.After(after.Add(time.Millisecond)) {
			t.Errorf("started %v (%v), want between %v and %v", started, ok, before, after)
		}
		return
	}
	t.Fatalf("scan did not find the sleeper")
}
