package supervisor

import (
	"bytes"
	"log/slog"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/drainit/drainit/supervisor/procjobs"
)

// noSuchPID is above the kernel's pid_max: signals to it fail with ESRCH.
const noSuchPID = 1 << 30

func testState(cfg Config) *state {
	if cfg.Grace == 0 {
		cfg.Grace = 30 * time.Second
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 10 * time.Second
	}
	cfg.Log = slog.New(slog.DiscardHandler)
	s := newState(cfg, noSuchPID, false)
	// The real one would signal this test binary's own children, or as
	// PID 1 every process on the machine; these tests want the timeline.
	s.strays = func(syscall.Signal) int { return 0 }
	return s
}

func TestDeadlinesAreMonotonic(t *testing.T) {
	s := testState(Config{Locks: []string{"/nonexistent/*.lock"}})
	s.startDrain(syscall.SIGTERM, time.Now())
	defer s.stopWatcher()
	for name, d := range map[string]time.Time{"drainEnd": s.drainEnd, "budgetEnd": s.budgetEnd, "delayEnd": s.delayEnd} {
		if !strings.Contains(d.String(), "m=") {
			t.Errorf("%s has no monotonic reading: %v", name, d)
		}
	}
}

func TestBudgetArithmetic(t *testing.T) {
	s := testState(Config{Grace: 300 * time.Second, StopTimeout: 10 * time.Second, Locks: []string{"/nonexistent/*.lock"}})
	t0 := time.Now()
	s.startDrain(syscall.SIGTERM, t0)
	defer s.stopWatcher()
	if got := s.drainEnd.Sub(t0); got != 289*time.Second {
		t.Errorf("drain deadline %v after T0, want 289s", got)
	}
	if got := s.budgetEnd.Sub(t0); got != 299*time.Second {
		t.Errorf("budget end %v after T0, want 299s", got)
	}
}

// With no locks and no delay the stop signal goes out at once.
func TestNoLocksStopsAtOnce(t *testing.T) {
	s := testState(Config{})
	now := time.Now()
	s.onDrainSignal(syscall.SIGTERM, now)
	if s.phase != stopping {
		t.Fatalf("phase %v, want stopping", s.phase)
	}
	if got := s.appKillAt.Sub(now); got != 10*time.Second {
		t.Errorf("SIGKILL planned %v after the stop signal, want the stop timeout", got)
	}
}

func TestDrainEndsOnReleaseAfterDelay(t *testing.T) {
	s := testState(Config{Delay: 2 * time.Second})
	t0 := time.Now()
	s.onDrainSignal(syscall.SIGTERM, t0)
	s.advance(t0.Add(time.Second))
	if s.phase != draining {
		t.Fatalf("phase %v before the delay passed, want draining", s.phase)
	}
	if wake, ok := s.nextWake(); !ok || wake.After(t0.Add(2*time.Second)) {
		t.Errorf("next wake %v, want by the end of the delay", wake)
	}
	s.advance(t0.Add(2 * time.Second))
	if s.phase != stopping {
		t.Fatalf("phase %v after the delay, want stopping", s.phase)
	}
}

func TestDrainSignals(t *testing.T) {
	s := testState(Config{Locks: []string{"/nonexistent/*.lock"}})
	t0 := time.Now()
	s.onDrainSignal(syscall.SIGTERM, t0)
	defer s.stopWatcher()
	s.onLocks([]string{"/app/lock/a.lock"})
	s.onDrainSignal(syscall.SIGTERM, t0.Add(time.Second))
	s.advance(t0.Add(time.Second))
	if s.phase != draining {
		t.Fatalf("a second SIGTERM ended the drain")
	}
	s.onDrainSignal(syscall.SIGINT, t0.Add(2*time.Second))
	if s.phase != stopping {
		t.Fatalf("SIGINT while draining: phase %v, want stopping", s.phase)
	}
}

func TestDrainDeadline(t *testing.T) {
	s := testState(Config{Grace: 20 * time.Second, StopTimeout: 5 * time.Second, Locks: []string{"/nonexistent/*.lock"}})
	t0 := time.Now()
	s.onDrainSignal(syscall.SIGTERM, t0)
	defer s.stopWatcher()
	s.onLocks([]string{"/app/lock/a.lock"})
	s.advance(t0.Add(13 * time.Second))
	if s.phase != draining {
		t.Fatalf("phase %v before the deadline", s.phase)
	}
	s.advance(t0.Add(14 * time.Second))
	if s.phase != stopping {
		t.Fatalf("phase %v at the deadline (20s - 5s - 1s), want stopping", s.phase)
	}
	if !s.appKillAt.Equal(t0.Add(19 * time.Second)) {
		t.Errorf("SIGKILL at T0+%v, want T0+19s", s.appKillAt.Sub(t0))
	}
}

// The app exits while draining: once the locks clear, the strays get
// TERM, then KILL no later than the budget's end, and the phase ends when
// the reaper says no child is left.
func TestAppExitThenStrays(t *testing.T) {
	s := testState(Config{Locks: []string{"/nonexistent/*.lock"}})
	t0 := time.Now()
	var ws unix.WaitStatus // exit 0
	s.appGone.Store(true)
	s.onReaped(reaped{app: &ws}, t0)
	defer s.stopWatcher()
	if s.phase != draining {
		t.Fatalf("app exit with a lock pattern: phase %v, want draining", s.phase)
	}
	s.onLocks([]string{})
	s.advance(t0.Add(time.Second))
	if s.phase != stopping || !s.strayTermed {
		t.Fatalf("phase %v, strays termed %v", s.phase, s.strayTermed)
	}
	if !s.strayKillAt.Equal(t0.Add(11 * time.Second)) {
		t.Errorf("strays' SIGKILL at T0+%v, want T0+11s", s.strayKillAt.Sub(t0))
	}
	s.onReaped(reaped{childless: true}, t0.Add(2*time.Second))
	s.advance(t0.Add(2 * time.Second))
	if s.phase != exited {
		t.Fatalf("phase %v with no child left, want exited", s.phase)
	}
	if s.exitCode() != 0 {
		t.Errorf("exit code %d", s.exitCode())
	}
}

func TestStatusCode(t *testing.T) {
	cases := map[unix.WaitStatus]int{
		0:                                0,
		unix.WaitStatus(42 << 8):         42,
		unix.WaitStatus(255 << 8):        255,
		unix.WaitStatus(syscall.SIGTERM): 143,
		unix.WaitStatus(syscall.SIGKILL): 137,
	}
	for ws, want := range cases {
		if got := statusCode(ws); got != want {
			t.Errorf("statusCode(%#x) = %d, want %d", uint32(ws), got, want)
		}
	}
}

// appGoneWithLock is a state whose app exited on its own while one lock is
// held, its status in but a child still left.
func appGoneWithLock(t *testing.T, pid1 bool, alone func() bool) (*state, time.Time) {
	s := testState(Config{Locks: []string{"/nonexistent/*.lock"}, Poll: time.Second})
	s.pid1, s.alone = pid1, alone
	t0 := time.Now()
	ws := unix.WaitStatus(syscall.SIGKILL)
	s.appGone.Store(true)
	s.onReaped(reaped{app: &ws}, t0)
	t.Cleanup(s.stopWatcher)
	s.onLocks([]string{"/app/lock/a.lock"})
	s.advance(t0)
	if s.phase != draining {
		t.Fatalf("a child is left: phase %v, want draining", s.phase)
	}
	return s, t0
}

// As PID 1, with the app gone and no child left, the drain ends once
// nobody else is in the namespace, and drainit exits with the app's code.
func TestNobodyLeftEndsTheDrain(t *testing.T) {
	alone := false
	s, t0 := appGoneWithLock(t, true, func() bool { return alone })
	s.onReaped(reaped{childless: true}, t0.Add(time.Second))
	s.advance(t0.Add(time.Second))
	if s.phase != draining {
		t.Fatalf("a process entered from outside is still there: phase %v, want draining", s.phase)
	}
	if wake, ok := s.nextWake(); !ok || !wake.Equal(t0.Add(2*time.Second)) {
		t.Errorf("next wake %v, want one --poll after the last look", wake.Sub(t0))
	}
	alone = true
	s.advance(t0.Add(2 * time.Second))
	if s.phase != exited {
		t.Fatalf("nobody left: phase %v, want exited", s.phase)
	}
	if s.exitCode() != 137 {
		t.Errorf("exit code %d, want the app's 137", s.exitCode())
	}
}

// As a subreaper drainit cannot see every process that may hold a lock:
// it keeps waiting, up to the deadline, and the deadline's line does not
// pretend to stop an app that is gone.
func TestSubreaperWaitsWhenNobodyIsLeft(t *testing.T) {
	s, t0 := appGoneWithLock(t, false, func() bool {
		t.Fatal("a subreaper asked whether it is alone in its namespace")
		return false
	})
	var out bytes.Buffer
	s.log = slog.New(slog.NewTextHandler(&out, nil))
	s.onReaped(reaped{childless: true}, t0.Add(time.Second))
	s.advance(t0.Add(time.Second))
	if s.phase != draining {
		t.Fatalf("phase %v, want draining", s.phase)
	}
	if !strings.Contains(out.String(), "still waiting for 1 lock") {
		t.Errorf("no line says why it waits:\n%s", out.String())
	}
	s.advance(s.drainEnd)
	if s.phase != exited {
		t.Fatalf("at the deadline: phase %v, want exited", s.phase)
	}
	if l := out.String(); !strings.Contains(l, "drain deadline reached with 1 lock still held: /app/lock/a.lock; the app has exited and left no process behind") || strings.Contains(l, "stopping the app") {
		t.Errorf("deadline lines:\n%s", l)
	}
}

// procState drains with --orphans and a stand-in for /proc that returns
// *found, every one a child of this test, as adopted jobs are: pidfds are
// not asked about processes that are not there.
func procState(found *[]procjobs.Proc) *state {
	s := testState(Config{Orphans: true})
	s.scanProcs = func() []procjobs.Proc {
		out := slices.Clone(*found)
		for i := range out {
			out[i].PPID = os.Getpid()
		}
		return out
	}
	return s
}

// The scan right before the stop signal finds a job started since the
// last one, and the drain goes on; an adopted job's end comes from the
// reaper.
func TestProcJobsLastScanAndReaper(t *testing.T) {
	found := []procjobs.Proc{{PID: 10, Cmd: "php job.php 1"}}
	s := procState(&found)
	t0 := time.Now()
	s.onDrainSignal(syscall.SIGTERM, t0)
	defer s.stopProcs()
	if s.phase != draining || s.procs.Len() != 1 {
		t.Fatalf("phase %v with %d process jobs, want draining with 1", s.phase, s.procs.Len())
	}
	found = []procjobs.Proc{{PID: 11, Cmd: "php job.php 2"}}
	s.onReaped(reaped{jobs: []int{10}}, t0)
	s.advance(t0)
	if s.phase != draining {
		t.Fatal("the drain ended with a job started since the last scan")
	}
	if !s.procs.Has(procjobs.ID{PID: 11}) {
		t.Fatalf("jobs %v, want pid 11", s.procs.Names())
	}
	found = nil
	s.onReaped(reaped{jobs: []int{11}}, t0)
	s.advance(t0)
	if s.phase != stopping {
		t.Fatalf("phase %v with no job left, want stopping", s.phase)
	}
}

// A PID the scan finds on another process (another start time) is the
// old job ended and a new one: the drain says both, and goes on.
func TestProcJobsReusedPID(t *testing.T) {
	found := []procjobs.Proc{{PID: 30, Start: 1, Cmd: "php job.php 1"}}
	s := procState(&found)
	var buf bytes.Buffer
	s.log = slog.New(slog.NewTextHandler(&buf, nil))
	t0 := time.Now()
	s.onDrainSignal(syscall.SIGTERM, t0)
	defer s.stopProcs()
	found = []procjobs.Proc{{PID: 30, Start: 2, Cmd: "php job.php 2"}}
	s.advance(t0.Add(time.Second))
	if s.phase != draining || !s.procs.Has(procjobs.ID{PID: 30, Start: 2}) || s.procs.Len() != 1 {
		t.Fatalf("phase %v holding %v, want draining with the second pid 30", s.phase, s.procs.Names())
	}
	// The end first, as it happened: with the same command both jobs
	// have the same name, and the new one's age must not go with the old.
	ended := strings.Index(buf.String(), `msg="job pid 30 (php job.php 1) ended, 1 left"`)
	began := strings.Index(buf.String(), `msg="new job while draining" job="pid 30 (php job.php 2)"`)
	if ended < 0 || began < 0 || ended > began {
		t.Errorf("want the old job's end, then the new job, in the log:\n%s", buf.String())
	}
}

// A job the scans stop finding (no pidfd, or a missed exit) is released at
// the next --poll scan; the deadline names every job still held.
func TestProcJobsPollAndDeadline(t *testing.T) {
	found := []procjobs.Proc{{PID: 20, Cmd: "a"}, {PID: 21, Cmd: "b"}}
	s := procState(&found)
	s.cfg.Poll = time.Second
	var buf bytes.Buffer
	s.log = slog.New(slog.NewTextHandler(&buf, nil))
	t0 := time.Now()
	s.onDrainSignal(syscall.SIGTERM, t0)
	defer s.stopProcs()
	if wake, _ := s.nextWake(); wake.After(t0.Add(time.Second)) {
		t.Errorf("next wake %v after the drain's start, want the next scan, 1s", wake.Sub(t0))
	}
	found = found[1:]
	s.advance(t0.Add(time.Second))
	if s.procs.Len() != 1 || s.phase != draining {
		t.Fatalf("after the poll scan: %v in phase %v, want pid 21 draining", s.procs.Names(), s.phase)
	}
	s.advance(s.drainEnd)
	if !strings.Contains(buf.String(), `drain deadline reached with 1 job still held: pid 21 (b); stopping the app anyway`) {
		t.Errorf("log:\n%s", buf.String())
	}
}
