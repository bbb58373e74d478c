package supervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drainit/drainit/supervisor/procjobs"
	"github.com/drainit/drainit/supervisor/status"
)

// published catches what observe hands the state file's writer, without
// the writer: each call returns the state written since the last, if any.
func published(s *state) func() (status.State, bool) {
	s.report.out = make(chan status.State, 1)
	return func() (status.State, bool) {
		select {
		case st := <-s.report.out:
			return st, true
		default:
			return status.State{}, false
		}
	}
}

// Under churn the file is written at most every publishEvery, and the
// last state always is.
func TestStateFileCoalesces(t *testing.T) {
	s := testState(Config{Locks: []string{"/nonexistent/*.lock"}})
	next := published(s)
	t0 := time.Now()
	s.observe(t0)
	if st, ok := next(); !ok || st.Phase != "running" || len(st.Jobs) != 0 {
		t.Fatalf("the first state: %+v %v", st, ok)
	}
	s.startDrain(syscall.SIGTERM, t0)
	defer s.stopWatcher()
	writes := 0
	// 10,000 lock snapshots within a second, each with one more lock.
	var held []string
	now := t0
	for i := range 10_000 {
		now = t0.Add(time.Duration(i) * 100 * time.Microsecond)
		held = append(held[:len(held):len(held)], fmt.Sprintf("/l/%06d.lock", i))
		s.held = held
		s.observe(now)
		if _, ok := next(); ok {
			writes++
		}
	}
	if max := int(now.Sub(t0)/publishEvery) + 1; writes > max {
		t.Errorf("%d writes in %v, want at most %d", writes, now.Sub(t0), max)
	}
	if writes < 2 {
		t.Errorf("%d writes: changes are not published", writes)
	}
	// The last state waits for its slot, which the controller wakes for.
	wake, ok := s.report.wake(time.Time{}, false)
	if !ok || wake.After(now.Add(publishEvery)) {
		t.Fatalf("no wake-up for the last state: %v %v", wake, ok)
	}
	s.observe(wake)
	st, ok := next()
	if !ok || st.Phase != "draining" || len(st.Jobs) != 10_000 || st.Jobs[0].Since != t0 || st.Deadline == nil || !st.Deadline.Equal(s.drainEnd) {
		t.Fatalf("the last state: %v %d jobs", ok, len(st.Jobs))
	}
	// Nothing changed: nothing written, no wake-up.
	s.observe(wake.Add(time.Second))
	if _, ok := next(); ok {
		t.Errorf("written with no change")
	}
	if _, ok := s.report.wake(time.Time{}, false); ok {
		t.Errorf("a wake-up with nothing to write")
	}
}

// A state still waiting for the writer when drainit exits is dropped, not
// written only to be removed.
func TestUnpublishDropsThePendingState(t *testing.T) {
	s := testState(Config{})
	published(s)
	s.report.done = make(chan struct{})
	close(s.report.done) // the writer has nothing left to finish
	s.observe(time.Now())
	s.unpublish()
	if st, ok := <-s.report.out; ok {
		t.Errorf("the writer would still get %+v", st)
	}
}

// Jobs are counted as finished when they leave, and what is held when the
// drain ends is what the stop cut, each since it began: a lock since its
// file's last change, a process since it started; since first seen where
// that cannot be told.
func TestReportFollowsJobs(t *testing.T) {
	s := testState(Config{Locks: []string{"/nonexistent/*.lock"}, Orphans: true})
	s.scanProcs = func() []procjobs.Proc { return nil }
	t0 := time.Now()
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")
	for path, mtime := range map[string]time.Time{b: t0.Add(-time.Hour), c: t0.Add(time.Hour)} {
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	s.startDrain(syscall.SIGTERM, t0)
	defer s.stopWatcher()
	defer s.stopProcs()
	s.held = []string{a, b} // a is gone already: no mtime
	// Children of this test, as adopted jobs are: no pidfd is asked
	// about PID 42.
	s.procs.Update([]procjobs.Proc{{PID: 42, PPID: os.Getpid(), Start: 7, Cmd: "php job.php"}})
	s.observe(t0)
	s.held = []string{b, c} // c was changed "later": a clock ahead
	s.observe(t0.Add(time.Second))
	reused := procjobs.Proc{PID: 42, PPID: os.Getpid(), Start: 8, Cmd: "php other.php"} // the PID reused
	s.procs.Update([]procjobs.Proc{reused})
	s.observe(t0.Add(2 * time.Second))
	if s.report.finished != 2 {
		t.Errorf("%d finished, want 2 (a, and the first pid 42)", s.report.finished)
	}
	s.endDrain(t0.Add(3 * time.Second))
	s.observe(t0.Add(3 * time.Second))
	started, ok := reused.Started()
	if !ok {
		t.Fatal("no CLOCK_BOOTTIME")
	}
	cut := map[string]status.Job{}
	for _, j := range s.report.cut {
		cut[j.Name()] = j
	}
	if len(cut) != 3 || !cut[b].Since.Equal(t0.Add(-time.Hour)) || !cut[c].Since.Equal(t0.Add(time.Second)) {
		t.Errorf("cut locks: %+v", s.report.cut)
	}
	// Started reads two clocks one after the other; a loaded machine may
	// stop it between them, each time it is called.
	if p := cut["pid 42 (php other.php)"]; p.Since.Sub(started).Abs() > 100*time.Millisecond {
		t.Errorf("cut process since %v, started %v: %+v", p.Since, started, s.report.cut)
	}
	if !slices.IsSortedFunc(s.report.cut, func(x, y status.Job) int { return x.Since.Compare(y.Since) }) {
		t.Errorf("not oldest first: %+v", s.report.cut)
	}
	st := s.snapshot()
	if st.Phase != "stopping" || len(st.Jobs) != 3 || !st.Deadline.Equal(s.budgetEnd) || !st.StopSignalAt.Equal(t0) {
		t.Errorf("stopping: %+v", st)
	}
}

// A PID reused by the same command is a job of the same name: the drain
// log's age for it is the new job's start, not lost with the old job.
func TestReportSameCommandReusedPID(t *testing.T) {
	s := testState(Config{Orphans: true})
	s.scanProcs = func() []procjobs.Proc { return nil }
	t0 := time.Now()
	s.startDrain(syscall.SIGTERM, t0)
	defer s.stopProcs()
	first := procjobs.Proc{PID: 42, PPID: os.Getpid(), Start: 7, Cmd: "php job.php"}
	s.procs.Update([]procjobs.Proc{first})
	s.observe(t0)
	again := procjobs.Proc{PID: 42, PPID: os.Getpid(), Start: 9, Cmd: "php job.php"}
	s.procs.Update([]procjobs.Proc{again})
	s.observe(t0.Add(time.Second))
	started, ok := again.Started()
	if !ok {
		t.Fatal("no CLOCK_BOOTTIME")
	}
	got, ok := s.report.since("pid 42 (php job.php)")
	if !ok || got.Sub(started).Abs() > 100*time.Millisecond { // two readings of Started, as above
		t.Errorf("since %v, %v; want the new job's start %v", got, ok, started)
	}
}

func TestTerminationMessage(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 23, 40, 1, 0, time.UTC)
	base := stopSummary{cause: syscall.SIGTERM, t0: t0, took: 12300 * time.Millisecond, finished: 5, cutAt: t0.Add(12300 * time.Millisecond), appStatus: "exit 0"}
	if got, want := terminationMessage(base), "drainit: stop by SIGTERM at 2026-12-06T23:40:01Z; drain took 12.3s; 5 jobs finished, none cut\napp: exit 0; drainit exit code 0\n"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}

	cut := base
	cut.deadline = true
	cut.cut = []status.Job{{Lock: "/app/lock/a.lock", Since: t0}, {PID: 123, Command: "php job.php 42", Since: t0.Add(2 * time.Second)}}
	want := "drainit: stop by SIGTERM at 2026-12-06T23:40:01Z; drain took 12.3s; 5 jobs finished, 2 cut at the drain deadline:\n" +
		"  /app/lock/a.lock (held 12s)\n  pid 123 (php job.php 42) (held 10s)\napp: exit 0; drainit exit code 0\n"
	if got := terminationMessage(cut); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}

	early := cut
	early.deadline = false
	if got := terminationMessage(early); !strings.Contains(got, "2 still held when the drain ended early:") {
		t.Errorf("%q", got)
	}

	// The app's own exit with nothing cut: the kubelet's fallback to the
	// log says more.
	self := base
	self.cause = 0
	if got := terminationMessage(self); got != "" {
		t.Errorf("app's own exit: %q", got)
	}
	self.cut = cut.cut
	if got := terminationMessage(self); !strings.HasPrefix(got, "drainit: stop by the app's own exit at ") {
		t.Errorf("app's own exit with jobs cut: %q", got)
	}
	if got := terminationMessage(stopSummary{}); got != "" {
		t.Errorf("no stop at all: %q", got)
	}
}

// Thousands of cut jobs with long names stay within what Kubernetes
// keeps, and the app's fate, which comes last, is kept.
func TestTerminationMessageBounded(t *testing.T) {
	s := stopSummary{cause: syscall.SIGTERM, t0: time.Now(), deadline: true, appStatus: "killed by SIGKILL", code: 137}
	for i := range 5000 {
		s.cut = append(s.cut, status.Job{Lock: "/app/lock/" + strings.Repeat("é", 300) + fmt.Sprint(i)})
	}
	m := terminationMessage(s)
	if len(m) > maxMessageBytes || strings.Count(m, "\n") > maxMessageLines {
		t.Errorf("%d bytes, %d lines", len(m), strings.Count(m, "\n"))
	}
	if !strings.HasSuffix(m, "app: killed by SIGKILL; drainit exit code 137\n") || !strings.Contains(m, " more\n") {
		t.Errorf("%q", m[len(m)-200:])
	}
	var more int
	fmt.Sscanf(m[strings.Index(m, "  … and "):], "  … and %d more", &more)
	if named := strings.Count(m, "  /app/lock/"); named+more != 5000 || named == 0 {
		t.Errorf("%d named and %d more, want 5000 in all", named, more)
	}
	long := strings.Repeat("x", 10000) + "\n" + strings.Repeat("y\n", 200) + "end\n"
	if b := bound(long); len(b) > maxMessageBytes || strings.Count(b, "\n") > maxMessageLines {
		t.Errorf("bound: %d bytes, %d lines", len(b), strings.Count(b, "\n"))
	}
}
